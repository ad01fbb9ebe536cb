// Engage audience key vectors from the code Segment's public code uses: lodash.snakecase over hand-written and
// seeded random audience names. Writes JSON to stdout. Deterministic. Regenerate with
//   npm ci && npm run generate            (in tests/conformance)
import { createRequire } from "node:module";
import { prng, version } from "./common.mjs";

const require = createRequire(import.meta.url);
const snakeCase = require("lodash.snakecase");

const random = prng(20261203);
const pick = (items) => items[Math.floor(random() * items.length)];

const HAND = [
  "Order Completed Last 30 Days", "café lovers", "Straße", "Don't Churn", "Don\u2019t Churn", "VIPUsers", "VIP Users",
  "vipUsers", "order-completed", "order_completed", "Last30Days", "last 30days", "30DaysLast", "XMLHttpRequest",
  "🎉 Party", "!!!", "   ", "", "ΟΔΟΣ Users", "İstanbul", "naïve café", "ﬁnance", "日本語 ユーザー", "Ĳssel", "Œuvre",
  "👩‍💻 Devs", "🇫🇷 France", "e\u0301clair", "A/B Test", "50% Off", "Users (Beta)", "already_snake_case",
  "CONSTANT_CASE", "camelCaseName", "PascalCaseName", "dot.separated.name", "tab\tseparated", "new\nline", "×÷",
  "We're #1", "I'M HERE", "they'll go", "ŉ", "ſ long s", "Ærø", "Þórr", "Ørsted", "Łódź", "Ärger Über",
];
const POOL = [
  "a", "b", "Z", "Q", "é", "É", "ß", "ø", "ı", "İ", "1", "9", "0", " ", "-", "_", ".", "'", "\u2019", "!", "&",
  "🎉", "👩", "\u200d", "💻", "\ufe0f", "\u0301", "Σ", "ς", "日", "ア", "\u00a0", "\t", "×", "Ǆ", "ǅ", "ǆ", "ﬁ",
];
const names = [...HAND];
const seen = new Set(names);
while (names.length < HAND.length + 500) {
  let name = "";
  const length = 1 + Math.floor(random() * 12);
  for (let i = 0; i < length; i++) name += pick(POOL);
  if (!seen.has(name)) {
    seen.add(name);
    names.push(name);
  }
}

const vectors = names.map((name) => ({ name, key: snakeCase(name) }));
process.stdout.write(
  JSON.stringify({ generator: "tests/conformance/audiences.mjs", packages: { "lodash.snakecase": version("lodash.snakecase") }, audiences: vectors }, null, 1) + "\n",
);
