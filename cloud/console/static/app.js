// The parents' app's page script (D27-F): registers the service worker and turns on
// notifications through it with the server's VAPID key. No framework: a few lines of DOM.
"use strict";
(function () {
  if (!("serviceWorker" in navigator)) return;
  const lang = document.body.dataset.lang;
  navigator.serviceWorker.register("/sw.js", { scope: "/app/" }).catch(() => {});

  const box = document.getElementById("push-box");
  if (!box || !("PushManager" in window) || !("Notification" in window)) return;
  const button = document.getElementById("push-on");
  const state = document.getElementById("push-state");
  const say = (key) => { state.textContent = state.dataset[key]; };

  function b64urlBytes(text) {
    const pad = "=".repeat((4 - (text.length % 4)) % 4);
    const raw = atob((text + pad).replace(/-/g, "+").replace(/_/g, "/"));
    return Uint8Array.from(raw, (c) => c.charCodeAt(0));
  }

  async function subscribe() {
    const permission = await Notification.requestPermission();
    if (permission !== "granted") { say("off"); return; }
    const keyResponse = await fetch("/app/push/key", { credentials: "same-origin" });
    if (!keyResponse.ok) { say("fail"); return; }
    const { application_server_key: key } = await keyResponse.json();
    const reg = await navigator.serviceWorker.ready;
    const sub = await reg.pushManager.subscribe({
      userVisibleOnly: true, applicationServerKey: b64urlBytes(key),
    });
    const saved = await fetch("/app/push/subscriptions", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ ...sub.toJSON(), lang }),
    });
    if (!saved.ok) { say("fail"); return; }
    button.hidden = true;
    say("on");
  }

  box.hidden = false;
  if (Notification.permission === "denied") { button.hidden = true; say("off"); return; }
  button.addEventListener("click", () => { subscribe().catch(() => say("fail")); });
  // already subscribed on this phone: say so instead of offering the button again
  navigator.serviceWorker.ready
    .then((reg) => reg.pushManager.getSubscription())
    .then((sub) => { if (sub && Notification.permission === "granted") { button.hidden = true; say("on"); } })
    .catch(() => {});
})();
