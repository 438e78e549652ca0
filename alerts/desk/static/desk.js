// AisleWatch security desk: the live feed (server-sent events), new-alert cues, sound toggle.
// No framework and no inline script: the page works under a strict Content-Security-Policy.
"use strict";

(function () {
  const feed = document.getElementById("feed");
  if (!feed) return;

  const rows = document.getElementById("alert-rows");
  const liveState = document.getElementById("live-state");
  const banner = document.getElementById("new-alert-banner");
  const empty = document.getElementById("no-alerts");
  const soundToggle = document.getElementById("sound-toggle");
  const filters = {
    store_id: feed.dataset.store, camera_id: feed.dataset.camera,
    kind: feed.dataset.kind, status: feed.dataset.status,
  };
  const baseTitle = document.title;
  let unseen = 0;
  let audio = null;
  let soundOn = false;

  function setLive(text, cls) {
    liveState.textContent = text;
    liveState.className = "live-state " + cls;
  }

  function matches(alert) {
    return Object.entries(filters).every(([key, want]) => !want || alert[key] === want);
  }

  function cell(text, cls) {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    td.textContent = text;
    return td;
  }

  function fillRow(tr, a) {
    tr.className = "alert-row status-" + a.status + " kind-" + a.kind;
    tr.dataset.alertId = a.alert_id;
    tr.dataset.storeId = a.store_id;
    tr.replaceChildren();
    const when = document.createElement("td");
    const link = document.createElement("a");
    link.href = "/alerts/" + encodeURIComponent(a.alert_id);
    link.textContent = a.raised_at.slice(0, 19).replace("T", " ");
    when.appendChild(link);
    tr.appendChild(when);
    tr.appendChild(cell(a.store_name));
    const camera = cell("");
    const cameraLink = document.createElement("a");
    cameraLink.className = "camera-link";
    cameraLink.href = "/cameras/" + encodeURIComponent(a.camera_id);
    cameraLink.textContent = a.camera_name;
    camera.appendChild(cameraLink);
    tr.appendChild(camera);
    tr.appendChild(cell(a.kind_label));
    tr.appendChild(cell(a.probability === null ? "–" : a.probability.toFixed(2)));
    tr.appendChild(cell(a.status, "status"));
    const verdict = cell(a.verdict_label, "verdict");
    if (a.acknowledged_by) {
      const by = document.createElement("span");
      by.className = "by";
      by.textContent = " by " + a.acknowledged_by;
      verdict.appendChild(by);
    }
    tr.appendChild(verdict);
  }

  function chime() {
    if (!soundOn || !audio) return;
    const now = audio.currentTime;
    [880, 660].forEach((hz, i) => {
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.frequency.value = hz;
      gain.gain.setValueAtTime(0.2, now + i * 0.18);
      gain.gain.exponentialRampToValueAtTime(0.001, now + i * 0.18 + 0.16);
      osc.connect(gain).connect(audio.destination);
      osc.start(now + i * 0.18);
      osc.stop(now + i * 0.18 + 0.17);
    });
  }

  function announce(a) {
    unseen += 1;
    document.title = "(" + unseen + ") " + baseTitle;
    banner.hidden = false;
    banner.replaceChildren();
    const link = document.createElement("a");
    link.href = "/alerts/" + encodeURIComponent(a.alert_id);
    link.textContent = "New alert: " + a.kind_label + " — " + a.camera_name + " (" + a.store_name + ")";
    banner.appendChild(link);
    banner.classList.remove("flash");
    void banner.offsetWidth; // restart the animation
    banner.classList.add("flash");
    chime();
  }

  function onAlert(message) {
    const data = JSON.parse(message.data);
    const a = data.alert;
    const counter = document.querySelector('[data-count-for="' + CSS.escape(a.store_id) + '"]');
    if (counter && data.store_open_alerts !== null) {
      counter.textContent = data.store_open_alerts;
      counter.parentElement.classList.toggle("has-open", data.store_open_alerts > 0);
    }
    let tr = rows.querySelector('tr[data-alert-id="' + CSS.escape(a.alert_id) + '"]');
    if (tr) {
      fillRow(tr, a);
    } else if (matches(a)) {
      tr = document.createElement("tr");
      fillRow(tr, a);
      rows.prepend(tr);
      empty.hidden = true;
    }
    if (tr) {
      tr.classList.add("fresh");
    }
    if (data.event === "raised") announce(a);
  }

  function connect() {
    const source = new EventSource("/api/stream?after=" + encodeURIComponent(feed.dataset.lastEventId || "0"));
    source.addEventListener("ready", () => setLive("live", "live"));
    source.addEventListener("alert", (message) => {
      feed.dataset.lastEventId = message.lastEventId;
      onAlert(message);
    });
    source.onerror = () => {
      setLive("reconnecting…", "down");
      // A stream closed because the session ended: go to the sign-in page instead of retrying forever.
      fetch("/api/me", { credentials: "same-origin" }).then((r) => {
        if (r.status === 401) window.location = "/login?next=" + encodeURIComponent(location.pathname + location.search);
      }).catch(() => {});
    };
    return source;
  }

  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) { unseen = 0; document.title = baseTitle; }
  });

  soundToggle.addEventListener("click", () => {
    // Browsers allow sound only after a click on the page: the toggle is that click.
    soundOn = !soundOn;
    if (soundOn && !audio) audio = new (window.AudioContext || window.webkitAudioContext)();
    soundToggle.textContent = "Sound: " + (soundOn ? "on" : "off");
    soundToggle.setAttribute("aria-pressed", String(soundOn));
    chime();
  });
  if (feed.dataset.sound === "off") soundToggle.hidden = true;

  connect();
})();
