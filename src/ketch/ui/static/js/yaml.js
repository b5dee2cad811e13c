// YAML out (for the viewer/editor). The server parses YAML in (PUT/POST with Content-Type application/yaml,
// or server-side apply), so the browser never needs a YAML parser beyond reading a few header fields.
const PLAIN = /^[A-Za-z_./][A-Za-z0-9_./ -]*$/;
const RESERVED = /^(true|false|yes|no|on|off|null|~|y|n)$/i;

function scalar(v) {
  if (v === null || v === undefined) return "null";
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  const s = String(v);
  if (s === "" || !PLAIN.test(s) || RESERVED.test(s) || /\s$/.test(s) || / #|: /.test(s) || !isNaN(Number(s))) return JSON.stringify(s);
  return s;
}
function key(k) { return PLAIN.test(k) && !RESERVED.test(k) && !/ /.test(k) ? k : JSON.stringify(k); }

export function dump(v, indent = "") {
  if (Array.isArray(v)) {
    if (!v.length) return "[]";
    return v.map(x => {
      if (x && typeof x === "object" && (Array.isArray(x) ? x.length : Object.keys(x).length)) {
        const inner = dump(x, indent + "  ");
        return `${indent}- ${inner.slice(indent.length + 2)}`;
      }
      return `${indent}- ${x && typeof x === "object" ? (Array.isArray(x) ? "[]" : "{}") : block(x, indent + "  ")}`;
    }).join("\n");
  }
  if (v && typeof v === "object") {
    const ks = Object.keys(v);
    if (!ks.length) return "{}";
    return ks.map(k => {
      const x = v[k];
      if (x && typeof x === "object" && (Array.isArray(x) ? x.length : Object.keys(x).length)) {
        return `${indent}${key(k)}:\n${dump(x, Array.isArray(x) ? indent : indent + "  ")}`;
      }
      return `${indent}${key(k)}: ${x && typeof x === "object" ? (Array.isArray(x) ? "[]" : "{}") : block(x, indent + "  ")}`;
    }).join("\n");
  }
  return scalar(v);
}
function block(v, indent) {
  if (typeof v === "string" && v.includes("\n") && !/^\s|[ \t]\n|\n\n$/.test(v)) {
    const keep = v.endsWith("\n");
    const body = keep ? v.slice(0, -1) : v;
    return (keep ? "|\n" : "|-\n") + body.split("\n").map(l => (l ? indent + l : "")).join("\n");
  }
  return scalar(v);
}

// Top-level apiVersion/kind and metadata.name/namespace of a YAML document, to know where to send it.
export function header(text) {
  const out = {};
  let inMeta = false;
  for (const line of text.split("\n")) {
    if (/^\S/.test(line)) inMeta = /^metadata:\s*$/.test(line);
    let m = line.match(/^(apiVersion|kind):\s*["']?([^"'#\s]+)/);
    if (m) out[m[1]] = m[2];
    m = inMeta && line.match(/^\s{2}(name|namespace):\s*["']?([^"'#\s]+)/);
    if (m) out[m[1]] = m[2];
  }
  return out;
}

// The line of a field path such as "spec.replicas" or "spec.containers[0].image" in dumped YAML (best effort).
export function lineOf(text, field) {
  if (!field) return -1;
  const parts = String(field).replace(/\[\d+\]/g, "").split(".").filter(Boolean);
  const lines = text.split("\n");
  let from = 0, found = -1;
  for (const p of parts) {
    const re = new RegExp(`^\\s*(- )?["']?${p.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}["']?:`);
    let hit = -1;
    for (let i = from; i < lines.length; i++) if (re.test(lines[i])) { hit = i; break; }
    if (hit < 0) break;
    found = hit; from = hit + 1;
  }
  return found;
}
