// Gatehouse overview: a read-only view over the admin API. The token lives
// in sessionStorage (this tab only) and is sent as a bearer header.
"use strict";
const $ = (s) => document.querySelector(s);

async function api(path) {
  const res = await fetch("/api/v1" + path, {
    headers: { Authorization: "Bearer " + sessionStorage.getItem("gatehouse.token") },
  });
  const body = await res.json();
  if (!res.ok) throw new Error(body.error ? body.error.code + ": " + body.error.message : res.statusText);
  return body;
}

function fill(table, rows) {
  const tbody = $(table + " tbody");
  tbody.replaceChildren();
  for (const cells of rows) {
    const tr = document.createElement("tr");
    for (const c of cells) {
      const td = document.createElement("td");
      td.textContent = c; // never innerHTML: names come from the API
      tr.appendChild(td);
    }
    tbody.appendChild(tr);
  }
}

async function load() {
  try {
    const [fleets, devices, batches] = await Promise.all([api("/fleets"), api("/devices"), api("/token-batches")]);
    fill("#fleets", fleets.fleets.map((f) => [f.name, f.description]));
    fill("#devices", devices.devices.map((d) => [d.id, d.fleet, d.profile, d.status]));
    fill("#batches", batches.token_batches.map((b) => [b.id, b.fleet, b.profile, b.used + "/" + b.count, b.expires_at]));
    $("#overview").hidden = false;
    $("#error").hidden = true;
  } catch (e) {
    $("#error").textContent = e.message;
    $("#error").hidden = false;
  }
}

$("#login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem("gatehouse.token", $("#token").value.trim());
  load();
});
if (sessionStorage.getItem("gatehouse.token")) load();
