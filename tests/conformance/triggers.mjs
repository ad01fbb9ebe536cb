// Trigger conformance vectors from Segment's own code: @segment/destination-subscriptions (parseFql, validate), the
// check Segment's actions-core runs for a destination's subscriptions, with its lexer @segment/fql-ts.
//
// Writes JSON to stdout: the events, and for every trigger Segment's parse error or its verdict on each event.
// Deterministic: hand-written edge cases, then seeded random triggers and events. Regenerate with
//   npm ci && npm run generate            (in tests/conformance)
import { createRequire } from "node:module";
import { prng } from "./common.mjs";

const require = createRequire(import.meta.url);
const { parseFql, validate } = require("@segment/destination-subscriptions");
const versions = {
  "@segment/destination-subscriptions": require("@segment/destination-subscriptions/package.json").version,
  "@segment/fql-ts": require("@segment/fql-ts/package.json").version,
};

const random = prng(20261201);
const pick = (items) => items[Math.floor(random() * items.length)];

// -- events --------------------------------------------------------------------------------------------------

const HAND_EVENTS = [
  { type: "track", event: "Signed Up", userId: "u1", properties: { n: 5, s: "x", b: true, z: null } },
  { type: "track", event: "Signed Up", userId: "u1", properties: { n: "5", s: "", b: "true", z: "null" } },
  { type: "track", event: "an", properties: { n: 1.5, "first name": "Bob", a: { b: 0 } } },
  { type: "track", event: "undefined", userId: "u2", properties: {} },
  { type: "track", userId: "u3" },
  { type: "identify", userId: "u1", traits: { n: 5, s: "xyz", email: "a@example.com" } },
  { type: "identify", userId: "u1", traits: { n: "5", email: null }, properties: { n: 7 } },
  { type: "identify", anonymousId: "a1" },
  { type: "page", name: "Home", userId: "u1", properties: { n: 0, s: "Home page" } },
  { type: "page", userId: "u1", properties: { name: null } },
  { type: "screen", name: "Settings", properties: { b: false } },
  { type: "group", groupId: "g1", traits: { s: "pro", n: -2 } },
  { type: "alias", userId: "u1", previousId: "p1" },
  { type: "track", event: "x", userId: "", context: { library: { name: "analytics.js" }, n: 5 }, properties: { s: "xy" } },
];

const VALUES = [5, "5", 1.5, "1.5", 0, "0", -2, true, "true", false, null, "null", "", "x", "xy", "xyz", "X", { b: 1 }, [1]];

function randomBag() {
  const bag = {};
  for (const key of ["n", "s", "b", "z"]) {
    if (random() < 0.7) bag[key] = pick(VALUES);
  }
  if (random() < 0.2) bag.a = { b: pick(VALUES) };
  return bag;
}

function randomEvent() {
  const type = pick(["track", "track", "identify", "page", "screen", "group"]);
  const event = { type };
  if (random() < 0.8) event.userId = pick(["u1", "", "0"]);
  if (type === "track" && random() < 0.9) event.event = pick(["Signed Up", "x", "an", "", "5"]);
  if ((type === "page" || type === "screen") && random() < 0.7) event.name = pick(["Home", "x", "", null]);
  if (random() < 0.8) event.properties = randomBag();
  if (random() < 0.5) event.traits = randomBag();
  if (random() < 0.3) event.context = { n: pick(VALUES), library: { name: pick(["analytics.js", "x"]) } };
  return event;
}

const events = [...HAND_EVENTS];
for (let i = 0; i < 26; i++) events.push(randomEvent());

// -- triggers ------------------------------------------------------------------------------------------------

const HAND_TRIGGERS = [
  'type = "track"',
  'type = "identify" or type = "page"',
  'event = "Signed Up"',
  "event = an",
  'event = "undefined"',
  "properties.n = 5",
  'properties.n = "5"',
  "properties.n != 5",
  'properties.n != "5"',
  "properties.n < 6",
  'properties.n < "6"',
  "properties.n >= 0",
  "properties.n > 1",
  "properties.n <= 1.5",
  "properties.z = null",
  "properties.z != null",
  'properties.z = "null"',
  "properties.b = true",
  'properties.b = "true"',
  "properties.b != true",
  "properties.b = false",
  'properties.missing = "undefined"',
  "properties.missing = null",
  "properties.missing != null",
  "name = null",
  "name != null",
  'name = "Home"',
  "userId = null",
  "userId != null",
  'userId = ""',
  "traits.n = 5",
  "traits.email != null",
  'traits.s = "xyz"',
  "properties.a.b = 0",
  'properties.first\\ name = "Bob"',
  'contains(properties.s, "x")',
  'contains(traits.s, "y")',
  '!contains(properties.s, "x")',
  'match(properties.s, "x*")',
  'match(properties.s, "*y")',
  'match(properties.s, "x")',
  'match(name, "H*")',
  'contains(event, "Sign")',
  '(contains(properties.s, "x") or type = "identify")',
  '(contains(properties.s, "x")) and type = "track"',
  'type = "track" and (event = "x" or event = "an")',
  'type = "track" and event = "x" or event = "an"',
  'type = "track" or event = "x" and userId != null',
  '(type = "track" or (event = "a"))',
  "properties.n=5",
  '"track" and type = "track"',
  "event = 'x'",
  'type = "track" and',
  "context.n = 5",
  'context.library.name = "analytics.js"',
  "properties.n = -2",
  "properties.n = 1.50",
  'properties.s = ""',
  "properties.s != null",
  'type = "group" and traits.n < 0',
  // fql-ts's lexer: words cut at the end, escapes, quotes that open a string, white space
  "event = nu",
  "event = o",
  "name = nul",
  'event = "a"and type = "track"',
  'prop\\erties.s = "x"',
  'properties.s\\.t = 1',
  "properties.n <=5",
  'type = "track"\nand event = "Signed Up"',
  'type = "track"\tor event = "x"',
  // destination-subscriptions' parser: groups end at the first ')', unmatched ones, negation
  'type = "track" and (contains(properties.s, "x") or event = "x")',
  'type = "track" or (event = "x" and contains(properties.s, "x"))',
  'type = "identify" or (match(event, "Sign*") and userId = "u1")',
  'type = "track")',
  '!(type = "track")',
  'contains(event, "Sign"',
  // values: true/false/null/number per field, odd numbers
  "userId = true",
  "name = true",
  "event = null",
  "event != null",
  "type = 5",
  "properties.n = +5",
  "properties.n = -",
  "properties.n = 5.",
  "properties.n != -0",
  "properties.n = 05",
  'properties.n > ""',
  'properties.n < "1e3"',
  'match(event, "*")',
  'match(event, "")',
  "contains(name, 5)",
  "contains(properties.s, x)",
];

const FIELDS = [
  "type", "event", "name", "userId", "properties.n", "properties.s", "properties.b", "properties.z",
  "properties.missing", "properties.a.b", "traits.n", "traits.s", "traits.b", "context.n", "context.library.name",
];
const LITERALS = [
  '"track"', '"identify"', '"page"', '"x"', '"xy"', '"5"', '"1.5"', '"true"', '"null"', '""', '"undefined"',
  '"Signed Up"', "5", "1.5", "0", "-2", "true", "false", "null",
];
const OPERATORS = ["=", "=", "!=", "<", "<=", ">", ">="];

function condition() {
  const roll = random();
  if (roll < 0.12) return `${random() < 0.3 ? "!" : ""}contains(${pick(FIELDS)}, ${pick(['"x"', '"y"', '"Sign"', '""'])})`;
  if (roll < 0.2) return `${random() < 0.3 ? "!" : ""}match(${pick(FIELDS)}, ${pick(['"x*"', '"*y"', '"x"', '"*"'])})`;
  return `${pick(FIELDS)} ${pick(OPERATORS)} ${pick(LITERALS)}`;
}

function randomTrigger() {
  const parts = [];
  const count = 1 + Math.floor(random() * 3);
  for (let i = 0; i < count; i++) {
    let part = condition();
    if (random() < 0.15) part = `(${part} ${pick(["and", "or"])} ${condition()})`;
    parts.push(part);
  }
  let text = parts[0];
  for (const part of parts.slice(1)) text += ` ${pick(["and", "or"])} ${part}`;
  return text;
}

const triggers = [...HAND_TRIGGERS];
const seen = new Set(triggers);
while (triggers.length < HAND_TRIGGERS.length + 440) {
  const text = randomTrigger();
  if (!seen.has(text)) {
    seen.add(text);
    triggers.push(text);
  }
}

// Mutated triggers: a word replaced, dropped or glued to the next, for the lexer's and the parser's corners.
const WORDS = [
  ...FIELDS, ...LITERALS, "contains", "match", "and", "or", "an", "nu", "=", "!=", "<", "<=", "!", "(", ")", ",", "'x'",
  "\\", '"', "properties.a\\ b", "\u{1F600}", "\t",
];
function mutated() {
  const words = randomTrigger().split(" ");
  const count = 1 + Math.floor(random() * 2);
  for (let i = 0; i < count; i++) {
    const at = Math.floor(random() * words.length);
    const how = pick(["replace", "drop", "glue"]);
    if (how === "replace") words[at] = pick(WORDS);
    else if (how === "drop" && words.length > 1) words.splice(at, 1);
    else if (at + 1 < words.length) words.splice(at, 2, words[at] + words[at + 1]);
  }
  return words.join(" ");
}
const unmutated = triggers.length;
while (triggers.length < unmutated + 400) {
  const text = mutated();
  if (!seen.has(text)) {
    seen.add(text);
    triggers.push(text);
  }
}

// -- Segment's verdicts --------------------------------------------------------------------------------------

const results = triggers.map((trigger) => {
  let parsed;
  try {
    parsed = parseFql(trigger);
  } catch (error) {
    return { trigger, error: String(error && error.message ? error.message : error), matches: null };
  }
  if (parsed.error) return { trigger, error: String(parsed.error.message || parsed.error), matches: null };
  // validate() itself throws on some trees parseFql returns: in Segment such a subscription errors when it is checked.
  const verdict = (event) => {
    try {
      return Boolean(validate(parsed, event));
    } catch {
      return "error";
    }
  };
  return { trigger, error: null, matches: events.map(verdict) };
});

process.stdout.write(
  JSON.stringify({ generator: "tests/conformance/triggers.mjs", packages: versions, events, triggers: results }, null, 1) + "\n",
);
