// The review page's refund rows: choosing an order picks its currency (a refund is in the order's currency).
"use strict";
document.querySelectorAll("select.sb-refund-order_id").forEach(function (select) {
  select.addEventListener("change", function () {
    var row = select.closest("tr");
    var option = select.selectedOptions[0];
    var currency = row ? row.querySelector("select.sb-refund-currency") : null;
    if (currency && option && option.dataset.currency) {
      currency.value = option.dataset.currency;
    }
  });
});
