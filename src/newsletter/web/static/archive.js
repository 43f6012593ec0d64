// An archive issue's frame grows to the height of the issue, so the page scrolls as one. The
// frame is same-origin and runs no script of its own; without JavaScript it keeps its CSS height.
(function () {
  var frame = document.querySelector("iframe.issue");
  if (!frame) { return; }
  function fit() {
    try {
      var doc = frame.contentDocument;
      if (doc && doc.documentElement) {
        frame.style.height = doc.documentElement.scrollHeight + "px";
      }
    } catch (e) { /* not readable: keep the CSS height */ }
  }
  frame.addEventListener("load", fit);
  window.addEventListener("resize", fit);
  if (frame.contentDocument && frame.contentDocument.readyState === "complete") { fit(); }
})();
