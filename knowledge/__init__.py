"""The knowledge base: the shop's help-centre documents as rows (documents and their sections), imported from
Markdown, HTML and plain text files, and searched by the database's own full-text search."""
