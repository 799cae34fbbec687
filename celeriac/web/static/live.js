// Live updates: listen to /api/events and, while events come, refetch this page's
// live section (?fragment=live) at most twice a second and swap it in.
// Forms marked data-confirm="question" ask before they are sent.
(function () {
  "use strict";
  var root = document.body.dataset.root || "";
  var status = document.getElementById("live-status");
  var live = document.getElementById("live");
  var pending = false;
  var last = 0;
  var pressed = false;   // a pointer went down inside the live section and is not up yet
  var submitted = 0;     // when a form was last sent (the page is about to be replaced)
  var SUBMIT_GRACE = 10000;

  function say(text, ok) {
    if (status) { status.textContent = text; status.className = "status " + (ok ? "up" : "down"); }
  }

  // Ask before a data-confirm form goes; a refused form is not sent (and not "submitted").
  document.addEventListener("submit", function (event) {
    var question = event.target.getAttribute && event.target.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { event.preventDefault(); return; }
    submitted = Date.now();
  });
  // A swap between a button's pointerdown and its pointerup would replace the button: the
  // click lands on nothing. So a press inside the section holds the refresh until release.
  document.addEventListener("pointerdown", function (event) {
    if (live && live.contains(event.target)) { pressed = true; }
  }, true);
  ["pointerup", "pointercancel"].forEach(function (type) {
    document.addEventListener(type, function () {
      if (pressed) { pressed = false; soon(); }
    }, true);
  });

  // The user is steering (pressing, a field or button of a form focused, a field changed,
  // a <details> opened) or has just sent a form: a swap now would throw their input, their
  // click or the answer's page away, so the refresh waits until they are done.
  function busy() {
    if (pressed || Date.now() - submitted < SUBMIT_GRACE) { return true; }
    var active = document.activeElement;
    if (active && live.contains(active)) {
      if (/^(INPUT|SELECT|TEXTAREA)$/.test(active.tagName)) { return true; }
      if (active.tagName === "BUTTON" && active.form) { return true; }
    }
    if (live.querySelector("details[open]")) { return true; }
    return Array.prototype.some.call(live.querySelectorAll("input"), function (field) {
      return field.type !== "hidden" && field.value !== field.defaultValue;
    });
  }

  function refresh() {
    pending = false;
    if (busy()) { setTimeout(soon, 1000); return; }
    last = Date.now();
    var started = last;
    var url = new URL(window.location.href);
    url.searchParams.set("fragment", "live");
    fetch(url, { credentials: "same-origin" }).then(function (response) {
      return response.ok ? response.text() : null;
    }).then(function (html) {
      if (html === null || !live) { return; }
      // They started steering while it was fetched, or sent a form since: that fragment
      // is older than what they acted on.
      if (busy() || submitted >= started) { setTimeout(soon, 1000); return; }
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
