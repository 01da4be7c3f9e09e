// kubesvc web: the graph from server-sent events, connections as they happen, traces.
"use strict";

const cy = cytoscape({
  container: document.getElementById("graph"),
  wheelSensitivity: 0.3,
  style: [
    { selector: "node", style: { label: "data(label)", "text-wrap": "wrap", "font-size": 9,
      "text-valign": "center", color: "#fff", "text-outline-width": 0 } },
    { selector: "node[kind = 'node']", style: { shape: "round-rectangle", "background-color": "#e9ecef",
      "border-color": "#999", "border-width": 1, color: "#333", "text-valign": "top", "font-size": 11 } },
    { selector: "node[kind = 'node'][!ready]", style: { "border-color": "#d62828", "border-width": 3 } },
    { selector: "node[kind = 'pod']", style: { shape: "ellipse", width: 70, height: 34, "background-color": "#2a9d8f" } },
    { selector: "node[kind = 'pod'][!ready]", style: { "background-color": "#bbb", color: "#333" } },
    { selector: "node[kind = 'service']", style: { shape: "diamond", width: 86, height: 48, "background-color": "#e76f51" } },
    { selector: "edge", style: { width: 1.5, "curve-style": "bezier", "target-arrow-shape": "triangle", "arrow-scale": 0.7 } },
    { selector: "edge[kind = 'selects']", style: { "line-color": "#ccc", "target-arrow-color": "#ccc", "line-style": "dashed" } },
    { selector: "edge[kind = 'endpoint']", style: { "line-color": "#264653", "target-arrow-color": "#264653" } },
    { selector: "edge[kind = 'endpoint'][!ready]", style: { "line-style": "dotted", "line-color": "#b00" } },
    { selector: "edge.conn", style: { "line-color": "#d62828", "target-arrow-color": "#d62828", width: 3,
      label: "data(label)", "font-size": 8, "text-rotation": "autorotate", color: "#d62828" } },
  ],
});

let layoutKey = "";
window.kubesvc = { graph: [], connections: [] };

function drawGraph(elements) {
  window.kubesvc.graph = elements;
  const wanted = new Map();
  for (const e of elements) {
    const d = Object.assign({}, e.data);
    if (d.kind === "on") continue;  // a pod sits inside its node instead
    if (d.kind === "pod" && d.node && elements.some((x) => x.data.id === "node:" + d.node)) d.parent = "node:" + d.node;
    wanted.set(d.id, d);
  }
  cy.batch(() => {
    cy.elements().not(".conn").forEach((el) => { if (!wanted.has(el.id())) el.remove(); });
    for (const d of [...wanted.values()].sort((a, b) => (a.source ? 1 : 0) - (b.source ? 1 : 0))) {
      const el = cy.getElementById(d.id);
      if (el.nonempty()) { el.data(d); if (d.parent !== undefined && el.isNode() && el.data("parent") !== d.parent) el.move({ parent: d.parent }); }
      else cy.add({ group: d.source ? "edges" : "nodes", data: d });
    }
  });
  const key = [...wanted.keys()].sort().join(",");
  if (key !== layoutKey) {
    layoutKey = key;
    place([...wanted.values()]);
  }
  renderLists(elements);
}

// Services in a row on top, each node a box below with its pods in a grid of three
// columns, pods without a node on the right: the same state always looks the same.
function place(items) {
  const services = items.filter((d) => d.kind === "service").sort((a, b) => a.id.localeCompare(b.id));
  const nodes = items.filter((d) => d.kind === "node").sort((a, b) => a.id.localeCompare(b.id));
  const pods = items.filter((d) => d.kind === "pod").sort((a, b) => a.id.localeCompare(b.id));
  const positions = {};
  const boxWidth = 3 * 120 + 60;
  services.forEach((d, i) => { positions[d.id] = { x: 60 + i * 130, y: 40 }; });
  const perNode = new Map(nodes.map((n) => [n.id, []]));
  const loose = [];
  for (const p of pods) (perNode.get(p.parent) || loose).push(p);
  nodes.forEach((n, k) => {
    perNode.get(n.id).forEach((p, j) => {
      positions[p.id] = { x: 60 + k * boxWidth + (j % 3) * 120, y: 200 + Math.floor(j / 3) * 70 };
    });
  });
  loose.forEach((p, j) => { positions[p.id] = { x: 60 + nodes.length * boxWidth + (j % 2) * 120, y: 200 + Math.floor(j / 2) * 70 }; });
  cy.layout({ name: "preset", positions: (el) => positions[el.id()] || el.position(), fit: true, padding: 30 }).run();
}

function li(text, attrs) {
  const item = document.createElement("li");
  item.textContent = text;
  for (const [k, v] of Object.entries(attrs || {})) item.setAttribute(k, v);
  return item;
}

function renderLists(elements) {
  const pods = document.getElementById("pods");
  const services = document.getElementById("services");
  const from = document.getElementById("trace-from");
  const chosen = from.value;
  pods.replaceChildren(); services.replaceChildren(); from.replaceChildren();
  for (const { data: d } of elements) {
    if (d.kind === "pod") {
      const item = li(`${d.ref} ${d.ip || "-"} on ${d.node || "-"} ${d.ready ? "ready" : d.phase} restarts ${d.restarts}`,
        { "data-ref": d.ref, "data-ready": String(d.ready) });
      if (!d.ready) item.className = "unready";
      pods.append(item);
      const opt = document.createElement("option"); opt.value = d.ref; opt.textContent = d.ref; from.append(opt);
    } else if (d.kind === "service") {
      const extra = [d.nodePorts.length ? "nodePorts " + d.nodePorts.join(",") : "", d.lbIPs.length ? "LB " + d.lbIPs.join(",") : ""].filter(Boolean).join(" ");
      services.append(li(`${d.ref} ${d.type} ${d.clusterIP || d.externalName} ${d.ports.join(",")} ${extra}`, { "data-ref": d.ref }));
    } else if (d.kind === "node") {
      const opt = document.createElement("option"); opt.value = "node/" + d.label; opt.textContent = "node/" + d.label; from.append(opt);
    }
  }
  if ([...from.options].some((o) => o.value === chosen)) from.value = chosen;
}

let connCount = 0;
function drawConnection(c) {
  window.kubesvc.connections.push(c);
  const nat = c.seenByEndpoint.split(":")[0] !== c.client.split(":")[0] ? ` (SNAT: seen as ${c.seenByEndpoint})` : "";
  const list = document.getElementById("connections");
  list.prepend(li(`${c.client} → ${c.destination} → DNAT ${c.endpoint}${nat} [${c.node}]`,
    { "data-client": c.clientId || "", "data-service": c.serviceId || "", "data-endpoint": c.endpointId || "" }));
  while (list.children.length > 30) list.lastChild.remove();
  const id = "conn" + (++connCount);
  const added = [];
  if (c.clientId && c.serviceId && cy.getElementById(c.clientId).nonempty())
    added.push(cy.add({ group: "edges", classes: "conn", data: { id: id + "a", source: c.clientId, target: c.serviceId, label: c.destination } }));
  if (c.serviceId && c.endpointId && cy.getElementById(c.endpointId).nonempty())
    added.push(cy.add({ group: "edges", classes: "conn", data: { id: id + "b", source: c.serviceId, target: c.endpointId, label: "DNAT " + c.endpoint } }));
  setTimeout(() => added.forEach((e) => e.remove()), 6000);
}

function connect() {
  const status = document.getElementById("status");
  const events = new EventSource("/api/events");
  events.addEventListener("open", () => { status.textContent = "live"; status.dataset.state = "live"; });
  events.addEventListener("graph", (ev) => drawGraph(JSON.parse(ev.data)));
  events.addEventListener("connection", (ev) => drawConnection(JSON.parse(ev.data)));
  events.addEventListener("error", () => { status.textContent = "reconnecting…"; status.dataset.state = "lost"; });
}

document.getElementById("trace-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const out = document.getElementById("trace-output");
  out.textContent = "tracing…";
  out.dataset.state = "running";
  const body = { from: document.getElementById("trace-from").value, target: document.getElementById("trace-target").value };
  try {
    const resp = await fetch("/api/trace", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    const doc = await resp.json();
    out.textContent = doc.error ? "error: " + doc.error : doc.text;
    out.dataset.state = doc.error ? "error" : (doc.ok ? "ok" : "failed");
    out.dataset.answeredBy = doc.answeredBy || "";
  } catch (e) {
    out.textContent = "error: " + e; out.dataset.state = "error";
  }
});

connect();
