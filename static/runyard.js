/* Runyard dashboard: live indicator, duplicate rows, running durations. No framework. */
(function () {
  "use strict";

  // htmx's ws extension reconnects by itself only after these close codes.
  var HTMX_RECONNECTS = [1006, 1011, 1012, 1013];

  function setLive(state, text) {
    document.querySelectorAll(".live-indicator").forEach(function (el) {
      el.dataset.state = state;
      el.textContent = text;
    });
  }

  document.addEventListener("htmx:wsOpen", function () {
    setLive("live", "Live");
  });

  document.addEventListener("htmx:wsClose", function (evt) {
    setLive("reconnecting", "Reconnecting…");
    var code = evt.detail && evt.detail.event ? evt.detail.event.code : 0;
    var socket = evt.detail && evt.detail.socketWrapper;
    // A server going away (a daphne restart sends 1001) is worth another try as well.
    if (socket && HTMX_RECONNECTS.indexOf(code) < 0 && document.body.contains(evt.target)) {
      setTimeout(function () { socket.reconnect(); }, 1000 + Math.random() * 2000);
    }
  });

  // New runs are prepended without looking at what is there: keep the first row of each id.
  function dropDuplicateRows() {
    var body = document.getElementById("runs-body");
    if (!body) return;
    var seen = {};
    Array.prototype.slice.call(body.children).forEach(function (row) {
      if (!row.id) return;
      if (seen[row.id]) row.remove();
      else seen[row.id] = true;
    });
  }

  document.addEventListener("htmx:wsAfterMessage", dropDuplicateRows);
  document.addEventListener("htmx:oobAfterSwap", dropDuplicateRows);

  function formatDuration(ms) {
    var s = Math.max(ms, 0) / 1000;
    if (s < 1) return Math.round(s * 1000) + " ms";
    if (s < 60) return s.toFixed(1) + " s";
    var m = Math.floor(s / 60), sec = Math.floor(s % 60);
    if (m < 60) return m + "m " + String(sec).padStart(2, "0") + "s";
    var h = Math.floor(m / 60);
    if (h < 24) return h + "h " + String(m % 60).padStart(2, "0") + "m";
    return Math.floor(h / 24) + "d " + String(h % 24).padStart(2, "0") + "h";
  }

  // Durations of running runs tick in the browser; the server re-renders them on each change.
  setInterval(function () {
    var now = Date.now();
    document.querySelectorAll("[data-running-since]").forEach(function (el) {
      var since = Date.parse(el.getAttribute("data-running-since"));
      if (!isNaN(since)) el.textContent = formatDuration(now - since);
    });
  }, 1000);
})();
