// Compact JWS: strict parsing, then the signature checked with `jose` (SPEC section 6).
// The same rules as processor/jws.py, held to conformance/authority_cases.json: three base64url parts,
// a JSON object in the header and the payload, HS256/ES256/RS256 only, no `crit`.
import { compactVerify, importJWK } from "jose";

export const ALGORITHMS = ["HS256", "ES256", "RS256"] as const;
export type Algorithm = (typeof ALGORITHMS)[number];
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

/** A token that cannot be accepted; `code` is the reason code of SPEC section 6. */
export class JwsError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
  }
}

export interface Compact {
  token: string;
  header: JsonObject;
  claims: JsonObject;
  alg: Algorithm;
  signature: Uint8Array;
}

export type PublicKeys = Map<string, { alg: Algorithm; key: CryptoKey }>;

export function isJwtShaped(value: string): boolean {
  return JWT_SHAPE.test(value);
}

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

export function b64urlDecode(part: string): Uint8Array {
  if (part.length % 4 === 1) throw new JwsError("malformed_token", "token is not base64url");
  const b64 = part.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (part.length % 4)) % 4);
  const binary = atob(b64);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

function isObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function jsonObject(part: string, what: string): JsonObject {
  let value: unknown;
  try {
    value = JSON.parse(utf8.decode(b64urlDecode(part)));
  } catch {
    throw new JwsError("malformed_token", `token ${what} is not JSON`);
  }
  if (!isObject(value)) throw new JwsError("malformed_token", `token ${what} is not a JSON object`);
  return value;
}

/** Split and decode a compact JWS; checks the algorithm, not the signature. */
export function parse(token: string): Compact {
  if (!isJwtShaped(token)) throw new JwsError("malformed_token", "token is not a well-formed JWT");
  const [head = "", body = "", sig = ""] = token.split(".");
  const header = jsonObject(head, "header");
  const alg = header["alg"];
  if (typeof alg !== "string" || !(ALGORITHMS as readonly string[]).includes(alg)) {
    throw new JwsError("alg_not_allowed", `algorithm ${JSON.stringify(alg ?? null).slice(0, 20)} is not allowed`);
  }
  if ("crit" in header || (header["b64"] !== undefined && header["b64"] !== null)) {
    throw new JwsError("malformed_token", "token header has critical extensions");
  }
  const kid = header["kid"];
  if (kid !== undefined && kid !== null && typeof kid !== "string") {
    throw new JwsError("malformed_token", "token kid is not a string");
  }
  const claims = jsonObject(body, "payload");
  return { token, header, claims, alg: alg as Algorithm, signature: b64urlDecode(sig) };
}

async function check(token: Compact, key: CryptoKey | Uint8Array): Promise<void> {
  try {
    await compactVerify(token.token, key, { algorithms: [token.alg] });
  } catch {
    throw new JwsError("bad_signature", "token signature does not verify");
  }
}

export async function verifyHs256(token: Compact, secret: Uint8Array): Promise<void> {
  await check(token, secret);
}

export async function verifyPublic(token: Compact, key: CryptoKey): Promise<void> {
  if (token.alg === "ES256" && token.signature.length !== 64) {
    throw new JwsError("bad_signature", "token signature does not verify");
  }
  await check(token, key);
}

/** kid -> (algorithm, public key) for P-256 and RSA entries; others (and oct keys) are ignored. */
export async function loadJwks(jwks: unknown): Promise<PublicKeys> {
  const loaded: PublicKeys = new Map();
  const entries = isObject(jwks) && Array.isArray(jwks["keys"]) ? jwks["keys"] : [];
  for (const jwk of entries) {
    if (!isObject(jwk) || typeof jwk["kid"] !== "string") continue;
    const alg: Algorithm | null = jwk["kty"] === "EC" && jwk["crv"] === "P-256" ? "ES256"
      : jwk["kty"] === "RSA" ? "RS256" : null;
    if (alg === null) continue;
    try {
      const { kty, crv, x, y, n, e } = jwk;
      const publicOnly = Object.fromEntries(Object.entries({ kty, crv, x, y, n, e }).filter(([, v]) => v !== undefined));
      const key = await importJWK(publicOnly as Record<string, string>, alg);
      if (key instanceof Uint8Array) continue;
      loaded.set(jwk["kid"], { alg, key });
    } catch {
      continue; // a broken entry verifies nothing; the others still work
    }
  }
  return loaded;
}
