// What the generators share: a seeded PRNG (mulberry32), so that the vectors are the same on every run; the
// installed version of a package; and an error's message (mapping-kit's validation throws an AggregateError).
import { readFileSync } from "node:fs";

export function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const version = (name) =>
  JSON.parse(readFileSync(new URL(`./node_modules/${name}/package.json`, import.meta.url))).version;

export const message = (error) => {
  if (error && typeof error[Symbol.iterator] === "function") return [...error].map((e) => e.message).join(" ");
  return String(error && error.message ? error.message : error);
};
