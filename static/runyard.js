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

  // Pages that poll instead of holding a socket (queues, workers: dashboard.ops_views) mark
  // their indicator `data-polling`: it says whether the last poll got through.
  function setPolling(ok) {
    document.querySelectorAll(".live-indicator[data-polling]").forEach(function (el) {
      el.dataset.state = ok ? "live" : "reconnecting";
      el.textContent = ok ? "Live" : "Reconnecting…";
    });
  }
  document.addEventListener("htmx:afterRequest", function (evt) { setPolling(evt.detail.successful); });
  document.addEventListener("htmx:sendError", function () { setPolling(false); });

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

  // A run may be prepended after a newer one (it reached a filtered status later): keep the
  // rows in creation order, newest first, by the key of their id cell ("<micros>.<run id>").
  function rowKey(row) {
    var cell = row.querySelector("[data-key]");
    var key = cell ? cell.getAttribute("data-key").split(".") : ["0", ""];
    return { at: Number(key[0]), id: key.slice(1).join(".") };
  }

  function newerFirst(a, b) {
    var x = rowKey(a), y = rowKey(b);
    if (x.at !== y.at) return y.at - x.at;
    return x.id < y.id ? 1 : x.id > y.id ? -1 : 0;
  }

  function sortRows() {
    var body = document.getElementById("runs-body");
    if (!body) return;
    var rows = Array.prototype.filter.call(body.children, function (row) { return row.id; });
    for (var i = 1; i < rows.length; i++) {
      if (newerFirst(rows[i - 1], rows[i]) > 0) {
        var empty = body.querySelector(".empty-row");
        rows.sort(newerFirst).forEach(function (row) { body.insertBefore(row, empty); });
        return;
      }
    }
  }

  function tidyRows() {
    dropDuplicateRows();
    sortRows();
  }

  // A live push replaces whole fragments (a row, the run panel): the keyboard focus must
  // survive it (a focused "Cancel run…" link replaced under the user would swallow their
  // Enter). htmx keeps focus only for its own swaps; the ws extension swaps out of band
  // without it. Ticked rows are kept further down, with the bulk bar.
  function focusKey(el) {
    if (!el || el === document.body || !el.tagName) return null;
    if (el.id) return "#" + CSS.escape(el.id);
    var tag = el.tagName.toLowerCase();
    if (el.getAttribute("href")) return tag + '[href="' + CSS.escape(el.getAttribute("href")) + '"]';
    if (el.name) return tag + '[name="' + CSS.escape(el.name) + '"][value="' + CSS.escape(el.value || "") + '"]';
    return null;
  }

  var kept = null;
  document.addEventListener("htmx:wsBeforeMessage", function () {
    var active = document.activeElement;
    kept = {
      focus: active,
      key: focusKey(active),
      start: active && "selectionStart" in active ? active.selectionStart : null,
      end: active && "selectionEnd" in active ? active.selectionEnd : null,
    };
  });

  function restoreFocus() {
    if (!kept) return;
    var was = kept;
    kept = null;
    if (!was.key || document.body.contains(was.focus)) return;
    var again = document.querySelector(was.key);
    if (!again) return;
    again.focus({ preventScroll: true });
    if (was.start !== null && again.setSelectionRange) {
      try { again.setSelectionRange(was.start, was.end); } catch (err) { /* not a text field */ }
    }
  }

  document.addEventListener("htmx:wsAfterMessage", restoreFocus);
  document.addEventListener("htmx:wsAfterMessage", tidyRows);
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

/* Manual trigger form (templates/dashboard/task.html): live JSON validity feedback, and the
   typed fields and the JSON editor kept in step when switching between them. The server
   checks everything again; this only helps while typing. */
(function () {
  "use strict";

  function checkJson(area) {
    var status = document.getElementById(area.id + "-status");
    var text = area.value.trim();
    var state = "", message = "";
    if (text) {
      try {
        JSON.parse(text);
        state = "ok";
        message = "Valid JSON";
      } catch (err) {
        state = "bad";
        message = "Not valid JSON: " + err.message;
      }
    }
    area.dataset.state = state;
    if (state === "bad") area.setAttribute("aria-invalid", "true");
    else if (!area.closest(".field-invalid")) area.removeAttribute("aria-invalid");
    if (status) {
      if (!status.dataset.idle) status.dataset.idle = status.textContent;
      status.dataset.state = state;
      status.textContent = message || status.dataset.idle;
    }
  }

  document.addEventListener("input", function (evt) {
    if (evt.target.matches && evt.target.matches("textarea[data-json]")) checkJson(evt.target);
  });

  // After a refused trigger (422), start at the first field that needs attention.
  document.addEventListener("DOMContentLoaded", function () {
    if (!document.getElementById("trigger-errors")) return;
    var invalid = document.querySelectorAll("#trigger-form [aria-invalid='true']");
    for (var i = 0; i < invalid.length; i++) {
      if (invalid[i].offsetParent !== null) { invalid[i].focus(); return; }
    }
  });

  function typedValue(field) {
    var kind = field.dataset.kind;
    var input = field.querySelector("input, select, textarea");
    if (!input) return undefined;
    if (kind === "boolean") return input.checked;
    var text = input.value;
    if (text.trim() === "") return undefined;
    if (kind === "integer" || kind === "number") {
      var n = Number(text);
      return isNaN(n) ? text : n;
    }
    if (kind === "json") {
      try { return JSON.parse(text); } catch (err) { return text; }
    }
    if (kind === "enum") {
      try { return JSON.parse(text); } catch (err) { return text; }
    }
    return text;
  }

  function fieldsToJson(editor) {
    var area = editor.querySelector("textarea[name='payload']");
    if (!area) return;
    var payload = {};
    editor.querySelectorAll("[data-editor='fields'] [data-field]").forEach(function (field) {
      var value = typedValue(field);
      if (value !== undefined) payload[field.dataset.field] = value;
    });
    area.value = JSON.stringify(payload, null, 2);
    checkJson(area);
  }

  function jsonToFields(editor) {
    var area = editor.querySelector("textarea[name='payload']");
    var payload;
    try { payload = JSON.parse(area.value || "{}"); } catch (err) { return; }
    if (!payload || typeof payload !== "object" || Array.isArray(payload)) return;
    editor.querySelectorAll("[data-editor='fields'] [data-field]").forEach(function (field) {
      var input = field.querySelector("input, select, textarea");
      var value = payload[field.dataset.field];
      if (!input) return;
      if (field.dataset.kind === "boolean") { input.checked = value === true; return; }
      if (value === undefined || value === null) input.value = "";
      else if (field.dataset.kind === "json" || (field.dataset.kind === "enum" && typeof value !== "string")) input.value = JSON.stringify(value);
      else input.value = String(value);
    });
  }

  document.addEventListener("change", function (evt) {
    var target = evt.target;
    if (!target.matches || !target.matches("input[name='payload_mode']")) return;
    var editor = target.closest(".task-editor");
    if (!editor) return;
    if (target.value === "json") fieldsToJson(editor);
    else jsonToFields(editor);
    editor.dataset.mode = target.value;
  });
})();

(function () {
  "use strict";

  // --- runs list: filter menus and row selection ---------------------------------------------

  // Filter menus (<details>) close on Escape, returning focus to their button, and on a click
  // elsewhere; only one is open at a time.
  document.addEventListener("keydown", function (evt) {
    if (evt.key !== "Escape") return;
    var open = document.querySelector("details[data-filter-menu][open]");
    if (!open) return;
    open.open = false;
    open.querySelector("summary").focus();
  });

  document.addEventListener("click", function (evt) {
    document.querySelectorAll("details[data-filter-menu][open]").forEach(function (menu) {
      if (!menu.contains(evt.target)) menu.open = false;
    });
  });

  // Empty fields stay out of the URL: ?env=dev&status=FAILED, not ...&queue=&region=&id=.
  document.addEventListener("formdata", function (evt) {
    if (!evt.target.matches("form[data-run-filters]")) return;
    var kept = [];
    evt.formData.forEach(function (value, name) { if (value !== "") kept.push([name, value]); });
    Array.from(new Set(Array.from(evt.formData.keys()))).forEach(function (name) { evt.formData.delete(name); });
    kept.forEach(function (pair) { evt.formData.append(pair[0], pair[1]); });
  });

  // Back to a filtered list shows the filters of its URL, not what was ticked before leaving it
  // (the browser would restore the form as it was left).
  window.addEventListener("pageshow", function () {
    document.querySelectorAll("form[data-run-filters]").forEach(function (form) { form.reset(); });
  });

  // The header checkbox selects every row of its table (rows pushed later arrive unselected).
  document.addEventListener("change", function (evt) {
    var all = evt.target;
    if (!all.matches || !all.matches("input[data-select-all]")) return;
    var on = all.checked;  // each row's change event below recomputes the header: read it once
    all.closest("table").querySelectorAll("tbody input[type=checkbox][name=runs]").forEach(function (box) {
      if (box.checked !== on) {
        box.checked = on;
        box.dispatchEvent(new Event("change", { bubbles: true }));
      }
    });
  });

  document.addEventListener("change", function (evt) {
    var box = evt.target;
    if (!box.matches || !box.matches("tbody input[type=checkbox][name=runs]")) return;
    var table = box.closest("table");
    var all = table && table.querySelector("input[data-select-all]");
    if (!all) return;
    var boxes = table.querySelectorAll("tbody input[type=checkbox][name=runs]");
    var checked = table.querySelectorAll("tbody input[type=checkbox][name=runs]:checked").length;
    all.checked = checked > 0 && checked === boxes.length;
    all.indeterminate = checked > 0 && checked < boxes.length;
  });
})();

/* --- run actions and bulk actions (dashboard.actions) ------------------------------------ */
(function () {
  "use strict";

  // A 422 brings the form back with its errors next to the inputs: swap it in like a success.
  document.addEventListener("htmx:beforeSwap", function (evt) {
    if (evt.detail.xhr && evt.detail.xhr.status === 422) {
      evt.detail.shouldSwap = true;
      evt.detail.isError = false;
    }
  });

  function within(root, selector) {
    var found = root.matches && root.matches(selector) ? [root] : [];
    return found.concat(Array.prototype.slice.call(root.querySelectorAll ? root.querySelectorAll(selector) : []));
  }

  // An action's form arrives as a <dialog> appended to <body>: open it as a modal (focus moves
  // in, Escape closes it) and drop it once closed, so the next one starts fresh.
  document.addEventListener("htmx:load", function (evt) {
    within(evt.detail.elt, "dialog[data-action-dialog]").forEach(function (dialog) {
      if (dialog.open) return;
      document.querySelectorAll("dialog[data-action-dialog]").forEach(function (other) {
        if (other !== dialog) other.remove();
      });
      dialog.addEventListener("close", function () { dialog.remove(); });
      dialog.showModal();
    });
    // A form swapped back with errors: put the cursor on the first wrong input.
    within(evt.detail.elt, "#action-form").forEach(function (form) {
      var wrong = form.querySelector("[aria-invalid='true']");
      if (wrong) wrong.focus();
    });
  });

  // In a dialog, "Back" closes it; on the form's own page it is a plain link to the run.
  document.addEventListener("click", function (evt) {
    var link = evt.target.closest && evt.target.closest("[data-close-dialog]");
    var dialog = link && link.closest("dialog");
    if (dialog) {
      evt.preventDefault();
      dialog.close();
    }
  });

  // Typing a delay or picking a time chooses that option of the reschedule form.
  function chooseWhen(evt) {
    var input = evt.target.closest && evt.target.closest("[data-when]");
    var radio = input && document.getElementById("when-" + input.getAttribute("data-when"));
    if (radio) radio.checked = true;
  }
  document.addEventListener("input", chooseWhen);
  document.addEventListener("focusin", chooseWhen);

  // The bulk bar says how many runs are ticked in the table.
  function countSelected() {
    var label = document.querySelector("#bulk-form [data-bulk-count]");
    if (!label) return;
    var n = document.querySelectorAll("input[name='runs'][form='bulk-form']:checked").length;
    label.textContent = n ? n + " selected" : "Selected runs";
  }
  document.addEventListener("change", function (evt) {
    if (evt.target.matches && evt.target.matches("input[name='runs'][form='bulk-form']")) countSelected();
  });
  document.addEventListener("DOMContentLoaded", countSelected);

  // A live push replaces rows (a status changed): keep the ticks of the rows it re-renders.
  var ticked = null;
  document.addEventListener("htmx:wsBeforeMessage", function () {
    ticked = {};
    document.querySelectorAll("input[name='runs'][form='bulk-form']:checked").forEach(function (box) {
      ticked[box.value] = true;
    });
  });
  document.addEventListener("htmx:wsAfterMessage", function () {
    document.querySelectorAll("input[name='runs'][form='bulk-form']").forEach(function (box) {
      if (ticked && ticked[box.value] && !box.checked) {
        box.checked = true;
        box.dispatchEvent(new Event("change", { bubbles: true }));
      }
    });
    ticked = null;
    countSelected();
  });
})();

/* --- what the Content-Security-Policy keeps out of the templates ------------------------- */
/* No inline scripts, style attributes or htmx eval (docs/operations.md): their work is here. */
(function () {
  "use strict";

  // Batch page: each part of the count bar grows with its count (data-grow). Set through the
  // CSSOM, which style-src 'self' allows, unlike a style="" attribute.
  function sizeCountBars(root) {
    var parts = root.matches && root.matches("[data-grow]") ? [root] : [];
    parts = parts.concat(Array.prototype.slice.call(root.querySelectorAll ? root.querySelectorAll("[data-grow]") : []));
    parts.forEach(function (part) { part.style.flexGrow = part.getAttribute("data-grow"); });
  }
  document.addEventListener("DOMContentLoaded", function () { sizeCountBars(document); });
  document.addEventListener("htmx:load", function (evt) { sizeCountBars(evt.detail.elt); });

  // Polling tables (queues, workers) skip their poll while the tab is hidden: htmx's
  // `[document.visibilityState === 'visible']` trigger filter would need eval.
  document.addEventListener("htmx:beforeRequest", function (evt) {
    if (document.visibilityState !== "visible" && evt.detail.elt.matches("[data-poll]")) evt.preventDefault();
  });


  // The Logs panel opens on its newest lines: while following, its list stays scrolled to the
  // end (the tail's own swaps scroll it with htmx's scroll:bottom). Scrolling up to read stops
  // following; coming back to the end resumes it.
  function followLogs(root) {
    var lines = document.getElementById("run-logs-lines");
    var follow = document.getElementById("run-logs-follow");
    if (!lines || !follow || !(root === document || root.contains(lines))) return;
    if (follow.checked) lines.scrollTop = lines.scrollHeight;
    if (lines.dataset.watched) return;
    lines.dataset.watched = "1";
    lines.addEventListener("scroll", function () {
      var atEnd = lines.scrollHeight - lines.scrollTop - lines.clientHeight < 24;
      var box = document.getElementById("run-logs-follow");
      if (box && box.checked !== atEnd && lines.scrollHeight > lines.clientHeight) {
        box.checked = atEnd;
        // Sent like a click on the box: the panel is redrawn, following again from the newest lines.
        if (atEnd) box.dispatchEvent(new Event("change", { bubbles: true }));
      }
    }, { passive: true });
  }
  document.addEventListener("DOMContentLoaded", function () { followLogs(document); });
  document.addEventListener("htmx:load", function (evt) { followLogs(evt.detail.elt); });

  // Copy buttons (API keys): data-copy names the element whose text is copied.
  function select(element) {
    var range = document.createRange();
    range.selectNodeContents(element);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-copy]");
    if (!button) return;
    var source = document.querySelector(button.getAttribute("data-copy"));
    if (!source) return;
    var text = source.textContent.trim();
    var done = function () {
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = "Copy"; }, 2000);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { select(source); });
    } else {
      select(source);
      try { if (document.execCommand("copy")) done(); } catch (e) { /* selected: the user copies by hand */ }
    }
  });
})();
