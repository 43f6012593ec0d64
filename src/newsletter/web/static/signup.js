// The signup form's hidden time zone: the browser's IANA zone, for local-time campaigns. The
// server checks it; without JavaScript the field stays empty and the list's default zone applies.
(function () {
  var field = document.getElementById("timezone");
  if (!field) { return; }
  try {
    field.value = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
  } catch (e) {
    field.value = "";
  }
})();
