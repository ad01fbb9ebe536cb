// Rehook destination conformance vectors from Segment's own code: @segment/actions-core runs the Rehook
// destination's two actions (their fields, defaults, types and default subscriptions restated below from
// segmentio/action-destinations, packages/destination-actions/src/destinations/rehook) over a list of events, with
// the default mappings and with custom ones, and records what each action's perform() would send, or the error.
//
// Writes JSON to stdout. Deterministic. Regenerate with
//   npm ci && npm run generate            (in tests/conformance)
import { createRequire } from "node:module";
import { version, message } from "./common.mjs";

const require = createRequire(import.meta.url);
const { Destination, defaultValues } = require("@segment/actions-core");
const { parseFql, validate } = require("@segment/destination-subscriptions");
const versions = Object.fromEntries(["@segment/actions-core", "@segment/destination-subscriptions", "liquidjs"].map((n) => [n, version(n)]));

// -- the destination, as Segment defines it (facts: field names, types, required, defaults, subscriptions) ------

let sent = null; // what the last perform() would have posted
const perform = (path) => async (_request, { payload }) => {
  sent = { path, json: payload };
  return { status: 200 };
};
const actions = {
  identifyUser: {
    title: "Identify User",
    description: "identify",
    defaultSubscription: 'type = "identify"',
    fields: {
      source_id: { label: "Source ID", type: "string", required: true, description: "", default: { "@path": "$.userId" } },
      metadata: { label: "User Metadata", type: "object", required: false, description: "", default: { "@path": "$.traits" } },
      referral_code: {
        label: "Referral Code", type: "string", allowNull: true, description: "",
        default: { "@path": "$.traits.referral_code" },
      },
    },
    perform: perform("/customers"),
  },
  trackEvent: {
    title: "Track Event",
    description: "track",
    defaultSubscription: 'type = "track"',
    fields: {
      event_name: {
        label: "Event Name", type: "string", required: true, description: "",
        default: { "@if": { exists: { "@path": "$.event" }, then: { "@path": "$.event" }, else: { "@path": "$.type" } } },
      },
      source_id: { label: "Source ID", type: "string", required: true, description: "", default: { "@path": "$.userId" } },
      metadata: { label: "Event Properties", type: "object", required: false, description: "", default: { "@path": "$.properties" } },
    },
    perform: perform("/events/invoke"),
  },
};
const destination = new Destination({
  name: "Rehook",
  slug: "actions-rehook",
  mode: "cloud",
  authentication: { scheme: "basic", fields: {} },
  extendRequest: () => ({ username: "k", password: "s" }),
  actions,
});
const settings = { api_key: "k", api_secret: "s" };

// -- events: what the SDK's identify(), track(), page() and screen() produce --------------------------------------

const events = [];
const add = (event) => events.push({ ...event, messageId: `m-${events.length}` });
// A null userId means "none given" (the SDK then sends no userId key).
const identify = (userId, traits, extra = {}) => add({ type: "identify", ...(userId === null ? {} : { userId }), traits, ...extra });
const track = (event, properties, userId, extra = {}) =>
  add({ type: "track", event, ...(userId === null ? {} : { userId: userId ?? "u1" }), properties, ...extra });

identify("u1", { email: "a@example.com", referral_code: "R1" });
identify("u2", { referral_code: 1.5 });
identify("u3", { referral_code: true });
identify("u4", { referral_code: "" });
identify("u5", { referral_code: null });
identify("u6", { referral_code: ["R6"] });
identify("u7", { referral_code: ["R7", "R8"] });
identify("u8", { referral_code: { code: "R9" } });
identify("u9", { referral_code: 0 });
identify("u10", {});
identify("u11", { name: "Zoë", nested: { list: [1, "2", null], flag: false }, n: 5, "sp ace": "s" });
identify("", { referral_code: "R12" });
identify(null, { email: "b@example.com" }, { anonymousId: "a1" });
identify("42", { n: -2.5 });
track("Signed Up", { plan: "pro", referral_code: "R1" });
track("Order Completed", {});
track("Order Completed", { total: 9.99, items: [{ sku: "S1" }], n: 5, "sp ace": "s", list: [1, 2] });
track("x", { plan: "basic" }, "");
track("x", { plan: "basic" }, null, { anonymousId: "a1" });
track("x", { userId: "p1" }, null, { anonymousId: "a2" }); // a user id only in the properties...
track("x", { userId: "p1" }, "p1", { anonymousId: "a2" }); // ... and the same call as the SDK reads it
// Every kind of JSON value, in properties.v and traits.v, for the string and object fields' coercion.
const KINDS = ["s", "", 0, 7, -1.5, 1e21, true, false, null, ["a"], ["a", "b"], [], [7], [null], { k: 1 }, {}];
for (const v of KINDS) track("Coerce", { v });
for (const v of KINDS) identify("c1", { v });
track("Coerce", {});
track("Zoë's café", { note: "<b>&</b>" });
// analytics.js (and the SDK) put a page's or screen's name into its properties.
add({ type: "page", userId: "u1", name: "Home", properties: { path: "/", name: "Home" } });
add({ type: "page", userId: "u1", properties: {} });
add({ type: "screen", userId: "u1", name: "Settings", properties: { n: 1, name: "Settings" } });
add({ type: "group", userId: "u1", groupId: "g1", traits: { plan: "pro" } });
add({ type: "alias", userId: "u1", previousId: "p1" });

// -- subscriptions: the defaults, and custom ones exercising mapping-kit through the destination ------------------

const coerce = (action, field, subscribe, path) => ({
  name: `coerce ${field}`,
  action,
  subscribe,
  mapping: all(action, { [field]: { "@path": path } }),
});
const all = (action, fields) => ({ ...defaultValues(actions[action].fields), ...fields });
const subscriptions = [
  { name: "default Identify User", action: "identifyUser", subscribe: 'type = "identify"', mapping: defaultValues(actions.identifyUser.fields) },
  { name: "default Track Event", action: "trackEvent", subscribe: 'type = "track"', mapping: defaultValues(actions.trackEvent.fields) },
  {
    name: "page and screen as 0.1.0 sent them",
    action: "trackEvent",
    subscribe: 'type = "page" or type = "screen"',
    mapping: all("trackEvent", { event_name: { "@path": "$.type" } }),
  },
  {
    name: "templates do not escape",
    action: "identifyUser",
    subscribe: 'type = "identify"',
    mapping: all("identifyUser", {
      metadata: {
        greeting: { "@template": "Hi <{{traits.name}}> & {{{traits.name}}}!" },
        list: { "@template": "{{traits.nested.list}}" },
        whole: { "@template": "{{traits.nested}}" },
        missing: { "@template": "[{{traits.nope}}]" },
        spaced: { "@template": "{{ userId }}" },
      },
      referral_code: { "@template": "{{traits.n}}" },
    }),
  },
  {
    name: "@if without then or else, unknown keys, blank",
    action: "trackEvent",
    subscribe: 'type = "track"',
    mapping: all("trackEvent", {
      metadata: {
        none: { "@if": { exists: { "@path": "$.properties.plan" } } },
        odd: { "@if": { exists: { "@path": "$.properties.plan" }, then: "yes", else: "no", other: 1 } },
        blank: { "@if": { blank: { "@path": "$.properties.n" }, then: "set", else: "blank" } },
        falsyElse: { "@if": { exists: { "@path": "$.properties.nope" }, then: "yes", else: 0 } },
        nullThen: { "@if": { exists: { "@path": "$.event" }, then: null } },
      },
    }),
  },
  {
    name: "metadata that resolves to nothing, null or a string",
    action: "trackEvent",
    subscribe: 'type = "track"',
    mapping: all("trackEvent", {
      metadata: { "@if": { exists: { "@path": "$.properties.plan" }, then: { "@path": "$.properties.nope" }, else: "" } },
    }),
  },
  {
    name: "paths",
    action: "trackEvent",
    subscribe: 'type = "track"',
    mapping: all("trackEvent", {
      metadata: {
        quoted: { "@path": "$.properties['sp ace']" },
        doubleQuoted: { "@path": '$.properties["sp ace"]' },
        index: { "@path": "$.properties.list[1]" },
        bracketWord: { "@path": "$.properties[n]" },
        noDollar: { "@path": "properties.n" },
        dollarInside: { "@path": "properties.$.n" },
        deep: { "@path": "$.properties.items[0].sku" },
        length: { "@path": "$.properties.list.length" },
      },
    }),
  },
  {
    name: "the whole event",
    action: "trackEvent",
    subscribe: 'type = "track" and event = "Signed Up"',
    mapping: all("trackEvent", { metadata: { "@path": "$." } }),
  },
  {
    name: "arrays, literals and _metadata",
    action: "trackEvent",
    subscribe: 'type = "track"',
    mapping: all("trackEvent", {
      event_name: { "@path": "$.event", _metadata: { label: "x" } },
      metadata: {
        list: [{ "@path": "$.event" }, { "@path": "$.properties.nope" }, 1, { k: { "@path": "$.userId" } }],
        literal: { "@literal": { "@path": "$.event" } },
        literalObject: { "@literal": { a: { "@path": "$.userId" } } },
      },
    }),
  },
  {
    name: "string fields coerce",
    action: "identifyUser",
    subscribe: 'type = "identify"',
    mapping: all("identifyUser", {
      source_id: { "@if": { exists: { "@path": "$.traits.n" }, then: { "@path": "$.traits.n" }, else: { "@path": "$.userId" } } },
      referral_code: { "@path": "$.traits.nested.flag" },
    }),
  },
  {
    name: "event name from a number, an array or nothing",
    action: "trackEvent",
    subscribe: 'type = "track"',
    mapping: all("trackEvent", { event_name: { "@path": "$.properties.n" } }),
  },
  {
    name: "__proto__ keys",
    action: "trackEvent",
    subscribe: 'type = "track"',
    mapping: all("trackEvent", { metadata: { __proto__: { a: 1 }, b: 2 } }),
    protoKey: true,
  },
  {
    name: "a directive only invalid when resolved, in an untaken branch",
    action: "trackEvent",
    subscribe: 'type = "track"',
    mapping: all("trackEvent", {
      metadata: { x: { "@if": { exists: { "@path": "$.properties.plan" }, then: "plan", else: { "@template": { "@path": "$.properties" } } } } },
    }),
  },
  {
    name: "an unknown directive inside an array",
    action: "trackEvent",
    subscribe: 'type = "track" and event = "Signed Up"',
    mapping: all("trackEvent", { metadata: { list: [{ "@nope": 1 }] } }),
  },
  coerce("trackEvent", "event_name", 'event = "Coerce"', "$.properties.v"),
  coerce("trackEvent", "source_id", 'event = "Coerce"', "$.properties.v"),
  coerce("trackEvent", "metadata", 'event = "Coerce"', "$.properties.v"),
  coerce("identifyUser", "source_id", 'type = "identify" and userId = "c1"', "$.traits.v"),
  coerce("identifyUser", "referral_code", 'type = "identify" and userId = "c1"', "$.traits.v"),
  coerce("identifyUser", "metadata", 'type = "identify" and userId = "c1"', "$.traits.v"),
  {
    name: "refused by mapping-kit's validation: @path of a number",
    action: "trackEvent",
    subscribe: 'type = "track"',
    mapping: all("trackEvent", { metadata: { x: { "@path": 5 } } }),
  },
  {
    name: "refused by mapping-kit's validation: two directives",
    action: "trackEvent",
    subscribe: 'type = "track"',
    mapping: all("trackEvent", { metadata: { x: { "@path": "$.event", "@template": "x" } } }),
  },
  {
    name: "refused by mapping-kit's validation: a directive with other keys",
    action: "trackEvent",
    subscribe: 'type = "track"',
    mapping: all("trackEvent", { metadata: { x: { "@path": "$.event", other: 1 } } }),
  },
];

// __proto__ as a key of an object literal sets the prototype in JavaScript; the mapping as stored (JSON) has the key.
subscriptions.find((s) => s.protoKey).mapping.metadata = JSON.parse('{"__proto__": {"a": 1}, "b": 2}');

// -- Segment's results ---------------------------------------------------------------------------------------

const validateMapping = require(new URL("./node_modules/@segment/actions-core/dist/cjs/mapping-kit/validate.js", import.meta.url).pathname).default;
const results = [];
for (const subscription of subscriptions) {
  let refused = null;
  try {
    validateMapping(structuredClone(subscription.mapping));
  } catch (error) {
    refused = message(error);
  }
  const parsed = parseFql(subscription.subscribe);
  const outcomes = [];
  for (const event of events) {
    if (!validate(parsed, event)) {
      outcomes.push({ subscribed: false });
      continue;
    }
    sent = null;
    try {
      await destination.executeAction(subscription.action, {
        event: structuredClone(event),
        mapping: structuredClone(subscription.mapping),
        settings,
      });
      outcomes.push({ subscribed: true, sent });
    } catch (error) {
      outcomes.push({ subscribed: true, error: message(error) });
    }
  }
  const { protoKey, ...stored } = subscription;
  results.push({ ...stored, mapping: subscription.mapping, refused, outcomes });
}

process.stdout.write(
  JSON.stringify({ generator: "tests/conformance/destination.mjs", packages: versions, events, subscriptions: results }, null, 1) + "\n",
);
