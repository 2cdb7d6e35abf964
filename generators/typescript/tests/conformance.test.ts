// conformance/authority_cases.json decided by this kit; processor/authority.py runs the same file.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { AuthorityError, MemoryReplayGuard, Verifier } from "../src/index.ts";
import type { Keys } from "../src/index.ts";

interface Case {
  name: string;
  headers: Record<string, string>;
  body: unknown;
  expect: Record<string, unknown>;
  keys?: Record<string, unknown>;
  used_jtis?: string[];
  replay_down?: boolean;
}

// tests/ under Deno, dist/tests/ under Node: the repository root is three or four levels up
const source = import.meta.url.includes("/dist/tests/") ? "../../../../conformance/authority_cases.json"
  : "../../../conformance/authority_cases.json";
const data = JSON.parse(readFileSync(new URL(source, import.meta.url), "utf8")) as {
  context: { generator: string; now: number; leeway_s: number; owners: Record<string, string>;
    failing_rows: string[]; keys: Record<string, unknown> };
  cases: Case[];
};
const context = data.context;

function keysFor(c: Case): Keys {
  const k = { ...context.keys, ...(c.keys ?? {}) } as {
    secret_keys: Record<string, string>; service_role_key: string; jwt_secret: string; jwks: unknown;
    processor_jwks: unknown; processor_secret: string;
  };
  return { secretKeys: k.secret_keys, serviceRoleKey: k.service_role_key, platformJwtSecret: k.jwt_secret,
    platformJwks: k.jwks, processorJwks: k.processor_jwks, processorSecret: k.processor_secret };
}

async function verifierFor(c: Case): Promise<Verifier> {
  const clock = () => context.now;
  const memory = new MemoryReplayGuard({ clock });
  for (const jti of c.used_jtis ?? []) memory.use(jti, context.now + 3600);
  // replay_down: a guard whose database is down
  const down = { seen: () => Promise.reject(new Error("the database is down")),
    use: () => Promise.reject(new Error("the database is down")) };
  const replay = c.replay_down ? down : memory;
  const ownerOf = async (id: string) => {
    if (context.failing_rows.includes(id)) throw new Error("the REST API answered 503");
    return context.owners[id] ?? null;
  };
  return await Verifier.create(context.generator, keysFor(c), ownerOf, { leewayS: context.leeway_s, clock, replay });
}

async function outcome(c: Case): Promise<Record<string, unknown>> {
  try {
    const p = await (await verifierFor(c)).verify(c.headers, c.body);
    return { status: 200, authority: p.authority, user_id: p.userId, retry_history_id: p.retryHistoryId,
      attempt: p.attempt, credential: p.credential };
  } catch (err) {
    if (err instanceof AuthorityError) return { status: err.status, code: err.code };
    throw err;
  }
}

test("the table is big enough and covers every status", () => {
  assert.ok(data.cases.length >= 100);
  assert.deepEqual(new Set(data.cases.map((c) => c.expect["status"])), new Set([200, 400, 401, 403, 404, 409, 503]));
});

for (const c of data.cases) {
  test(`conformance: ${c.name}`, async () => {
    const want = { ...c.expect };
    if (want["status"] === 200) {
      want["retry_history_id"] ??= null;
      want["attempt"] ??= null;
    }
    assert.deepEqual(await outcome(c), want);
  });
}
