from django.urls import path

from chat import views

urlpatterns = [
    path("", views.chat_page, name="chat"),
    path("login/", views.ChatLoginView.as_view(), name="login"),
    path("logout/", views.ChatLogoutView.as_view(), name="logout"),
]
