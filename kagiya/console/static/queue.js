// Live pending-request queue: asks the server for the list every few seconds and swaps it in, without reloading
// the page. No inline code (the Content-Security-Policy forbids it); the list is server-rendered and escaped.
// A comment someone is typing is never thrown away: while a form in the queue has focus or text, the swap waits.
(function () {
  "use strict";
  var queue = document.getElementById("queue");
  var status = document.getElementById("queue-status");
  if (!queue || !window.fetch) { return; }
  var interval = parseInt(queue.getAttribute("data-interval"), 10) || 5000;
  var count = parseInt(queue.getAttribute("data-count"), 10) || 0;

  function busy() {
    if (queue.contains(document.activeElement) && document.activeElement !== queue) { return true; }
    var boxes = queue.querySelectorAll("textarea");
    for (var i = 0; i < boxes.length; i++) { if (boxes[i].value) { return true; } }
    return false;
  }

  function poll() {
    if (busy()) { window.setTimeout(poll, interval); return; }
    fetch(queue.getAttribute("data-src"), {credentials: "same-origin", headers: {"Accept": "text/html"}})
      .then(function (resp) {
        if (resp.status === 401) { window.location.reload(); return null; }
        if (!resp.ok) { throw new Error("HTTP " + resp.status); }
        var fresh = parseInt(resp.headers.get("X-Pending-Count"), 10) || 0;
        return resp.text().then(function (html) { return {html: html, fresh: fresh}; });
      })
      .then(function (got) {
        if (got && !busy()) {
          var doc = new DOMParser().parseFromString(got.html, "text/html");
          queue.replaceChildren.apply(queue, Array.prototype.slice.call(doc.body.childNodes));
          if (got.fresh > count) { status.textContent = (got.fresh - count) + " new pending request(s)."; }
          count = got.fresh;
          queue.setAttribute("data-count", String(count));
        }
      })
      .catch(function () { status.textContent = "Could not refresh the queue; retrying."; })
      .then(function () { window.setTimeout(poll, interval); });
  }
  window.setTimeout(poll, interval);
}());
