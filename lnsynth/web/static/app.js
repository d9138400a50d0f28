// lnsynth: light progressive enhancement only; every page works without JavaScript.
document.addEventListener("DOMContentLoaded", function () {
  // Trials filters: apply on change (the Filter button still works without JS).
  var filters = document.getElementById("filters");
  if (filters) {
    filters.querySelectorAll("select").forEach(function (el) {
      el.addEventListener("change", function () { filters.requestSubmit ? filters.requestSubmit() : filters.submit(); });
    });
  }
  // Outcome form: flag events > n before the round trip (the server checks again).
  var form = document.getElementById("add-outcome");
  if (form) {
    form.addEventListener("input", function () {
      var e = parseInt(form.elements["events"].value, 10), n = parseInt(form.elements["n"].value, 10);
      form.elements["events"].setCustomValidity(!isNaN(e) && !isNaN(n) && e > n ? "events must not exceed n" : "");
    });
  }
});
