// Live updates: listen to /api/events and, while events come, refetch this page's
// live section (?fragment=live) at most twice a second and swap it in.
(function () {
  "use strict";
  var root = document.body.dataset.root || "";
  var status = document.getElementById("live-status");
  var live = document.getElementById("live");
  var pending = false;
  var last = 0;

  function say(text, ok) {
    if (status) { status.textContent = text; status.className = "status " + (ok ? "up" : "down"); }
  }

  // The user is steering (a field focused or changed, a <details> opened): a swap now
  // would throw their input away, so the refresh waits until they are done.
  function busy() {
    var active = document.activeElement;
    if (active && live.contains(active) && /^(INPUT|SELECT|TEXTAREA)$/.test(active.tagName)) {
      return true;
    }
    if (live.querySelector("details[open]")) { return true; }
    return Array.prototype.some.call(live.querySelectorAll("input"), function (field) {
      return field.value !== field.defaultValue;
    });
  }

  function refresh() {
    pending = false;
    if (busy()) { setTimeout(soon, 1000); return; }
    last = Date.now();
    var url = new URL(window.location.href);
    url.searchParams.set("fragment", "live");
    fetch(url, { credentials: "same-origin" }).then(function (response) {
      return response.ok ? response.text() : null;
    }).then(function (html) {
      if (html === null || !live) { return; }
      if (busy()) { setTimeout(soon, 1000); return; }  // they started while it was fetched
      live.innerHTML = html;
    }).catch(function () { say("offline", false); });
  }

  function soon() {
    if (pending) { return; }
    pending = true;
    setTimeout(refresh, Math.max(0, 500 - (Date.now() - last)));
  }

  if (!window.EventSource || !live) { return; }
  var source = new EventSource(root + "/api/events");
  source.onopen = function () { say("live", true); };
  source.onerror = function () { say("reconnecting…", false); };
  source.onmessage = soon;
  ["task-sent", "task-received", "task-started", "task-succeeded", "task-failed",
   "task-retried", "task-revoked", "task-rejected", "worker-online", "worker-offline",
   "worker-heartbeat"].forEach(function (type) { source.addEventListener(type, soon); });
})();
