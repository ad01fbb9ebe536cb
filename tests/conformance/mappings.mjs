// mapping-kit conformance vectors from Segment's own code: @segment/actions-core's transform() (with its mapping
// validation) over seeded random directive trees and events.
//
// Writes JSON to stdout: for every mapping, mapping-kit's validation error (or null) and, per event, the output or
// the error it throws. Deterministic. Regenerate with
//   npm ci && npm run generate            (in tests/conformance)
import { createRequire } from "node:module";
import { prng, version, message } from "./common.mjs";

const require = createRequire(import.meta.url);
const { transform } = require("@segment/actions-core");
const validateMapping = require(new URL("./node_modules/@segment/actions-core/dist/cjs/mapping-kit/validate.js", import.meta.url).pathname).default;
const versions = Object.fromEntries(["@segment/actions-core", "liquidjs"].map((n) => [n, version(n)]));

const random = prng(20261202);
const pick = (items) => items[Math.floor(random() * items.length)];
const chance = (p) => random() < p;

// -- events --------------------------------------------------------------------------------------------------

const SCALARS = ["x", "", "Zoë", "<b>&</b>", 0, 5, -1.5, true, false, null, "{{a}}", " sp "];
function value(depth = 0) {
  if (depth < 2 && chance(0.25)) return Array.from({ length: Math.floor(random() * 3) }, () => value(depth + 1));
  if (depth < 2 && chance(0.25)) return bag(depth + 1);
  return pick(SCALARS);
}
function bag(depth = 0) {
  const out = {};
  for (const key of ["a", "b", "n", "s", "sp ace", "list"]) if (chance(0.5)) out[key] = value(depth);
  return out;
}
const events = [
  { type: "track", event: "Signed Up", userId: "u1", properties: { a: { b: 1 }, n: 0, s: "", "sp ace": "s", list: [1, "x", null] } },
  { type: "identify", userId: "u2", traits: { a: "x", n: 5, list: [] } },
  { type: "track" },
];
for (let i = 0; i < 27; i++) {
  const event = { type: pick(["track", "identify", "page"]) };
  if (chance(0.8)) event.userId = pick(["u1", "", "0"]);
  if (chance(0.6)) event.event = pick(["Signed Up", "", "x"]);
  if (chance(0.8)) event.properties = bag();
  if (chance(0.5)) event.traits = bag();
  events.push(event);
}

// -- mappings ------------------------------------------------------------------------------------------------

const PATHS = [
  "$.properties.a", "$.properties.a.b", "properties.n", "$.properties.s", "$.traits.a", "$.userId", "$.event", "$.type",
  "$.properties['sp ace']", '$.properties["sp ace"]', "$.properties.list[1]", "$.properties.list.0", "$.properties[a]",
  "$.properties.list.length", "$.missing", "$.", "", ".", "$.properties.$.n", "$.properties['']", "properties..a",
];
const TEMPLATES = [
  "{{properties.a}}", "{{{properties.a}}}", "[{{ userId }}]", "{{properties.list}}-{{properties.n}}", "{{}}", "{{ }}",
  "{{properties.s}}{{traits.a}}", "plain", "{{properties['sp ace']}}", "{{properties.a.b}} {{{event}}}",
];
function tree(depth = 0) {
  const roll = random();
  if (depth > 3 || roll < 0.15) return pick([...SCALARS, { k: "v" }, []]);
  if (roll < 0.4) return { "@path": chance(0.9) ? pick(PATHS) : tree(depth + 1) };
  if (roll < 0.55) return { "@template": chance(0.9) ? pick(TEMPLATES) : tree(depth + 1) };
  if (roll < 0.75) {
    const opts = {};
    const operand = chance(0.7) ? "exists" : "blank";
    if (chance(0.95)) opts[operand] = chance(0.8) ? { "@path": pick(PATHS) } : pick(SCALARS);
    if (chance(0.8)) opts.then = tree(depth + 1);
    if (chance(0.6)) opts.else = chance(0.8) ? tree(depth + 1) : pick(SCALARS);
    if (chance(0.1)) opts.other = 1;
    return { "@if": opts };
  }
  if (roll < 0.82) return { "@literal": tree(depth + 1) };
  if (roll < 0.9) return Array.from({ length: 1 + Math.floor(random() * 2) }, () => tree(depth + 1));
  if (roll < 0.93) return pick([{ "@nope": 1 }, { "@path": "$.event", _metadata: { x: 1 } }, { "@path": "$.event", x: 1 }, { "@path": 5 }, { "@if": "x" }]);
  const obj = {};
  for (const key of ["x", "y"]) if (chance(0.7)) obj[key] = tree(depth + 1);
  return obj;
}
const mappings = [];
for (let i = 0; i < 400; i++) {
  const mapping = {};
  for (const field of ["f1", "f2", "f3"]) if (chance(0.7)) mapping[field] = tree();
  mappings.push(mapping);
}

// -- mapping-kit's results -----------------------------------------------------------------------------------

const results = mappings.map((mapping) => {
  let refused = null;
  try {
    validateMapping(structuredClone(mapping));
  } catch (error) {
    refused = message(error);
  }
  const outputs = refused
    ? null
    : events.map((event) => {
        try {
          return { output: transform(structuredClone(mapping), structuredClone(event)) };
        } catch (error) {
          return { error: message(error) };
        }
      });
  return { mapping, refused, outputs };
});

process.stdout.write(
  JSON.stringify({ generator: "tests/conformance/mappings.mjs", packages: versions, events, mappings: results }) + "\n",
);
