// The signup forms' hidden time zone: the browser's IANA zone, for local-time campaigns. The
// server checks it; without JavaScript the field stays empty and the list's default zone applies.
// A page may hold several forms (the archive offers one per public list).
(function () {
  var zone = "";
  try {
    zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
  } catch (e) {
    zone = "";
  }
  var fields = document.querySelectorAll("input[type=hidden][name=timezone]");
  for (var i = 0; i < fields.length; i++) { fields[i].value = zone; }
})();
