// AisleWatch security desk: the live feed (server-sent events), new-alert cues, sound toggle; on an alert's
// page, its evidence video appears as soon as it is made (the "evidence_ready" event).
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
    const kind = cell(a.kind_label);
    if (a.has_video) {
      const badge = document.createElement("span");
      badge.className = "video-badge";
      badge.title = "has an evidence video";
      badge.textContent = "video";
      kind.append(" ", badge);
    }
    tr.appendChild(kind);
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

  function announce(text, href) {
    unseen += 1;
    document.title = "(" + unseen + ") " + baseTitle;
    banner.hidden = false;
    banner.replaceChildren();
    const link = document.createElement("a");
    link.href = href;
    link.textContent = text;
    banner.appendChild(link);
    banner.classList.remove("flash");
    void banner.offsetWidth; // restart the animation
    banner.classList.add("flash");
    chime();
  }

  let catchingUp = true;  // events before "ready" are the replay of what this page missed
  let missedWhileAway = 0;

  function onAlert(message) {
    const data = JSON.parse(message.data);
    const a = data.alert;
    const known = rows.querySelector('tr[data-alert-id="' + CSS.escape(a.alert_id) + '"]') !== null;
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
    if (tr && data.event !== "evidence_ready") {
      tr.classList.add("fresh");
    }
    // A replayed or repeated event updates the row but does not ring again for an alert already listed.
    if (data.event === "raised" && !known) {
      if (catchingUp) {
        if (matches(a)) missedWhileAway += 1;
      } else {
        announce("New alert: " + a.kind_label + " — " + a.camera_name + " (" + a.store_name + ")",
                 "/alerts/" + encodeURIComponent(a.alert_id));
      }
    }
  }

  let retryMs = 1000;

  function connect() {
    catchingUp = true;
    missedWhileAway = 0;
    const source = new EventSource("/api/stream?after=" + encodeURIComponent(feed.dataset.lastEventId || "0"));
    source.addEventListener("ready", () => {
      setLive("live", "live");
      retryMs = 1000;
      catchingUp = false;
      if (missedWhileAway > 0) {
        announce(missedWhileAway + " new alert" + (missedWhileAway > 1 ? "s" : "") + " while this page was away",
                 "/?status=open");
      }
    });
    source.addEventListener("alert", (message) => {
      feed.dataset.lastEventId = message.lastEventId;
      onAlert(message);
    });
    source.onerror = () => {
      setLive("reconnecting…", "down");
      if (source.readyState !== EventSource.CLOSED) return;  // the browser retries by itself
      // Closed for good (an error answer, or the server ended the stream): find out why, then reconnect
      // from the last event seen, backing off up to 30 s.
      fetch("/api/me", { credentials: "same-origin" }).then((r) => {
        if (r.status === 401) {
          window.location = "/login?next=" + encodeURIComponent(location.pathname + location.search);
          return;
        }
        setTimeout(connect, retryMs);
        retryMs = Math.min(30000, retryMs * 2);
      }).catch(() => { setTimeout(connect, retryMs); retryMs = Math.min(30000, retryMs * 2); });
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

(function () {
  // An alert's page: listen to the live stream for this alert's video and show it without a reload.
  const page = document.getElementById("alert");
  if (!page || !window.EventSource) return;
  const alertId = page.dataset.alertId;
  const evidence = document.getElementById("evidence");
  let lastEventId = page.dataset.lastEventId || "0";

  function showVideo() {
    if (document.getElementById("evidence-video")) return;
    const src = "/alerts/" + encodeURIComponent(alertId) + "/video";
    const video = document.createElement("video");
    video.id = "evidence-video";
    video.src = src;
    video.controls = true;
    video.muted = true;
    video.playsInline = true;
    video.preload = "metadata";
    evidence.prepend(video);
    const notice = document.getElementById("video-notice") || document.createElement("p");
    notice.id = "video-notice";
    notice.className = "video-notice ready";
    notice.setAttribute("role", "status");
    notice.textContent = "The video of this alert is ready.";
    video.after(notice);
    if (page.dataset.canDownload === "yes") {
      let downloads = document.getElementById("downloads");
      if (!downloads) {
        downloads = document.createElement("p");
        downloads.id = "downloads";
        downloads.className = "downloads";
        notice.after(downloads);
      }
      if (!document.getElementById("download-video")) {
        const link = document.createElement("a");
        link.id = "download-video";
        link.href = src + "/download";
        link.textContent = "Download video";
        downloads.append(" ", link);
      }
    }
  }

  function connect() {
    const source = new EventSource("/api/stream?after=" + encodeURIComponent(lastEventId));
    source.addEventListener("alert", (message) => {
      lastEventId = message.lastEventId || lastEventId;
      const data = JSON.parse(message.data);
      if (data.alert.alert_id !== alertId) return;
      if (data.alert.has_video) {
        showVideo();
        source.close(); // nothing more to wait for on this page
      }
    });
    return source;
  }

  // Only while the video is being made (the server rendered the notice): other alert pages open no stream.
  if (document.getElementById("video-notice") && !document.getElementById("evidence-video")) connect();
})();
