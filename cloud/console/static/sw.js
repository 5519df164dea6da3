// The parents' app's service worker (D27-F), hand-written, served at /sw.js with scope /app/.
// - Offline shell: the app's pages go to the network first; each page that answered 200 is
//   kept, so the feed's last page is readable offline; a page never kept gets /app/{lang}/offline.
//   Pages carry their language in the path (research/ui.md pitfall 3); signing out clears
//   every copy (the server answers Clear-Site-Data).
// - Push: shows the notification the cloud sent (cloud/push/texts.py: title, body, kind,
//   person_id) and opens that child's feed when it is tapped.
"use strict";
const VERSION = "qadam-app-2";
const SHELL = ["/app/kk/offline", "/app/ru/offline", "/app/en/offline"];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(VERSION).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) if (name !== VERSION) await caches.delete(name);
    await self.clients.claim();
  })());
});

function langOf(url) {
  const m = /^\/app\/(kk|ru|en)\//.exec(new URL(url).pathname);
  return m ? m[1] : "kk";
}

async function page(request) {
  const cache = await caches.open(VERSION);
  try {
    const response = await fetch(request);
    // not the invitation's pages: their URL holds the one-time token
    const keep = !new URL(request.url).pathname.startsWith("/app/invite/");
    if (keep && response.ok && !response.redirected) await cache.put(request, response.clone());
    return response;
  } catch (err) {
    return (await cache.match(request)) || (await cache.match(`/app/${langOf(request.url)}/offline`))
      || Response.error();
  }
}

async function asset(request) {
  const cache = await caches.open(VERSION);
  const kept = await cache.match(request);
  if (kept) return kept;
  const response = await fetch(request);
  if (response.ok) await cache.put(request, response.clone());
  return response;
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (request.mode === "navigate" && url.pathname.startsWith("/app/")) {
    event.respondWith(page(request));
  } else if (url.pathname.startsWith("/static/")) {
    event.respondWith(asset(request));
  }
});

self.addEventListener("push", (event) => {
  let data = {};
  try { data = event.data ? event.data.json() : {}; } catch (err) { data = { body: event.data.text() }; }
  // /app/ answers in the account's language (the payload's texts are in it already)
  const url = data.person_id ? `/app/?child=${encodeURIComponent(data.person_id)}` : "/app/";
  event.waitUntil(self.registration.showNotification(data.title || "qadam", {
    body: data.body || "", tag: `${data.kind || "event"}-${data.person_id || ""}-${data.time || ""}`,
    icon: "/static/app-icon-192.png", data: { url },
  }));
});

// An open app window goes to the event's child; else a new one opens. (A function of its own:
// the browser tests call it in the worker, as headless Chromium cannot click a notification.)
async function openTarget(path) {
  const target = new URL(path, self.location.origin).href;
  const open = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  const app = open.find((client) => new URL(client.url).pathname.startsWith("/app/"));
  const moved = app ? await app.navigate(target) : null;
  if (moved) return moved.focus();
  return self.clients.openWindow(target);
}

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  event.waitUntil(openTarget(event.notification.data?.url || "/app/"));
});

self.addEventListener("pushsubscriptionchange", (event) => {
  // the browser replaced the subscription: store the new one for the same account
  const sub = event.newSubscription;
  if (!sub) return;
  event.waitUntil(fetch("/app/push/subscriptions", {
    method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
    body: JSON.stringify(sub.toJSON()),  // the account's language
  }).catch(() => {}));
});
