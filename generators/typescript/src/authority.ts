// Service authority for generators: tell the credential's kind first, then decide (SPEC section 6).
// The TypeScript twin of processor/authority.py: the same decisions, statuses and reason codes, held to
// conformance/authority_cases.json. Pure: the only I/O is the injected ownerOf(retryHistoryId) look-up.
import { isJwtShaped, JwsError, loadJwks, parse, verifyHs256, verifyPublic } from "./jws.ts";
import type { Compact, JsonObject, PublicKeys } from "./jws.ts";
import { MemoryReplayGuard } from "./replay.ts";
import type { ReplayGuard } from "./replay.ts";

export const ISSUER = "generation-processor";
export const MAX_LEEWAY_S = 30;
export const CHECK_TIMEOUT_S = 10; // an owner look-up or a replay guard that has not answered by then: 503
export const MAX_CREDENTIAL_CHARS = 8192;
const UUID_SHAPE = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

/** Who owns a generation: its user id, null when there is no such row; throws when the look-up fails. */
export type OwnerLookup = (retryHistoryId: string) => Promise<string | null>;

/** A request is not allowed: status 400/401/403/404/409/503, a stable code, a human message. */
export class AuthorityError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }

  toJSON(): { error: string; message: string } {
    return { error: this.code, message: this.message };
  }
}

/** Who a request acts for, and how that was decided. */
export interface Principal {
  userId: string;
  authority: "user" | "service-key" | "scoped-jwt";
  retryHistoryId: string | null;
  attempt: number | null;
  credential: "user-jwt" | "secret-key" | "service-role-jwt" | "scoped-jwt";
}

/** What a generator knows: the platform's keys (service keys, user-token keys) and the processor's. */
export interface Keys {
  secretKeys?: Record<string, string>;
  serviceRoleKey?: string;
  platformJwtSecret?: string; // the platform's legacy HS256 secret: user tokens only
  platformJwks?: unknown; // the platform's JWKS (SUPABASE_JWKS): user tokens
  processorJwks?: unknown; // the processor's public JWKS: scoped tokens, ES256
  processorSecret?: string; // the processor's shared secret: scoped tokens, HS256
}

export interface VerifierOptions {
  leewayS?: number;
  clock?: () => number; // seconds since the epoch
  replay?: ReplayGuard;
  checkTimeoutS?: number; // owner look-up and replay guard, each (default CHECK_TIMEOUT_S)
}

export type Headers_ = Headers | Record<string, string>;

const fail = (status: number, code: string, message: string) => new AuthorityError(status, code, message);
const strip = (value: string) => value.replace(/^[ \t]+|[ \t]+$/g, "");
const encoder = new TextEncoder();

export function credentialKind(value: string): "secret-key" | "publishable-key" | "jwt" | "opaque" {
  if (value.startsWith("sb_secret_")) return "secret-key";
  if (value.startsWith("sb_publishable_")) return "publishable-key";
  return isJwtShaped(value) ? "jwt" : "opaque";
}

/** Decides for one generator. Build once (Verifier.create); verify() per request. */
export class Verifier {
  readonly replay: ReplayGuard;
  private readonly leewayS: number;
  private readonly clock: () => number;
  private readonly checkTimeoutS: number;
  private readonly serviceKeys: Uint8Array[];

  private constructor(
    readonly generator: string,
    private readonly keys: Keys,
    private readonly ownerOf: OwnerLookup,
    private readonly platformKeys: PublicKeys,
    private readonly processorKeys: PublicKeys,
    options: VerifierOptions,
  ) {
    this.leewayS = options.leewayS ?? MAX_LEEWAY_S;
    if (this.leewayS > MAX_LEEWAY_S) throw new RangeError(`leeway is at most ${MAX_LEEWAY_S} s`);
    this.clock = options.clock ?? (() => Date.now() / 1000);
    this.replay = options.replay ?? new MemoryReplayGuard({ clock: this.clock });
    this.checkTimeoutS = options.checkTimeoutS ?? CHECK_TIMEOUT_S;
    const all = [...Object.values(keys.secretKeys ?? {}), keys.serviceRoleKey ?? ""];
    this.serviceKeys = all.filter((k) => k).map((k) => encoder.encode(k));
  }

  static async create(generator: string, keys: Keys, ownerOf: OwnerLookup, options: VerifierOptions = {}) {
    const [platform, processor] = await Promise.all([loadJwks(keys.platformJwks), loadJwks(keys.processorJwks)]);
    return new Verifier(generator, keys, ownerOf, platform, processor, options);
  }

  /** The principal of a request, or throws AuthorityError (never anything else). */
  async verify(headers: Headers_, body: unknown): Promise<Principal> {
    try {
      return await this.decideRequest(headers, body);
    } catch (err) {
      if (err instanceof AuthorityError) throw err;
      const name = err instanceof Error ? err.name : typeof err;
      throw fail(401, "invalid_credentials", `credentials could not be verified (${name})`);
    }
  }

  private async decideRequest(headers: Headers_, body: unknown): Promise<Principal> {
    const lower = new Map<string, string>();
    const entries = headers instanceof Headers ? [...headers.entries()] : Object.entries(headers);
    for (const [k, v] of entries) lower.set(k.toLowerCase(), strip(String(v)));
    const [retryId, attempt] = retryFields(body);
    const authorization = lower.get("authorization") ?? "";
    const apikey = lower.get("apikey") ?? "";
    if (authorization.length > MAX_CREDENTIAL_CHARS || apikey.length > MAX_CREDENTIAL_CHARS) {
      throw fail(401, "credential_too_large", `a credential over ${MAX_CREDENTIAL_CHARS} characters`);
    }
    if (authorization) {
      const space = authorization.indexOf(" ");
      const scheme = space < 0 ? authorization : authorization.slice(0, space);
      const token = space < 0 ? "" : strip(authorization.slice(space + 1));
      if (scheme.toLowerCase() !== "bearer" || !token) {
        throw fail(401, "unsupported_authorization", "Authorization must be 'Bearer <token>'");
      }
      return await this.decide(token, retryId, attempt, "bearer");
    }
    if (apikey) return await this.decide(apikey, retryId, attempt, "apikey");
    throw fail(401, "missing_credentials", "no Authorization or apikey header");
  }

  private async decide(credential: string, retryId: string | null, attempt: number | null,
    source: "bearer" | "apikey"): Promise<Principal> {
    const kind = credentialKind(credential);
    if (kind === "publishable-key") {
      throw fail(401, "publishable_key", "a publishable key alone does not authorize a generation");
    }
    if (this.isServiceKey(credential)) {
      return await this.asService(retryId, attempt, kind === "jwt" ? "service-role-jwt" : "secret-key");
    }
    if (kind === "secret-key") throw fail(401, "unknown_secret_key", "secret key not recognised");
    if (kind === "jwt") return await this.decideJwt(credential, retryId, attempt, source);
    throw fail(401, "malformed_credentials", `the ${source} credential is neither an API key nor a JWT`);
  }

  private isServiceKey(credential: string): boolean {
    const given = encoder.encode(credential);
    let matched = false;
    for (const key of this.serviceKeys) matched = constantTimeEqual(given, key) || matched; // every key compared
    return matched;
  }

  private async decideJwt(token: string, retryId: string | null, attempt: number | null,
    source: "bearer" | "apikey"): Promise<Principal> {
    let compact: Compact;
    let scoped: boolean;
    try {
      compact = parse(token);
      // the issuer picks the family of keys; the signature is then checked with that family only
      scoped = compact.claims["iss"] === ISSUER;
      await this.checkSignature(compact, scoped);
    } catch (err) {
      if (err instanceof JwsError) throw fail(401, err.code, err.message);
      throw err;
    }
    const claims = compact.claims;
    this.checkTimes(claims);
    if (scoped) return await this.asScoped(claims, retryId, attempt);
    const role = claims["role"];
    if (role === "service_role") {
      if ("sub" in claims && hasAudience(claims, "authenticated")) {
        throw fail(401, "ambiguous_token", "a token cannot be both a user and the service role");
      }
      return await this.asService(retryId, attempt, "service-role-jwt");
    }
    if (role === "anon") throw fail(401, "anon_key", "an anon token does not authorize a generation");
    if (role !== "authenticated" || !hasAudience(claims, "authenticated")) {
      throw fail(401, "not_a_user_token", "token role/audience is not 'authenticated'");
    }
    if (source === "apikey") throw fail(401, "user_token_in_apikey", "a user token belongs in Authorization: Bearer");
    const userId = asUuid(claims["sub"]);
    if (userId === null) throw fail(401, "missing_sub", "user token has no valid sub");
    if (retryId !== null) {
      const owner = await this.owner(retryId);
      if (owner === null || owner !== userId) { // unknown and foreign look the same to a user
        throw fail(403, "not_owner", "this generation belongs to another user");
      }
    }
    return { userId, authority: "user", retryHistoryId: retryId, attempt, credential: "user-jwt" };
  }

  private async checkSignature(token: Compact, scoped: boolean): Promise<void> {
    const secret = (scoped ? this.keys.processorSecret : this.keys.platformJwtSecret) ?? "";
    if (token.alg === "HS256") {
      if (!secret) throw new JwsError("hs256_not_configured", "HS256 tokens are not accepted here");
      return await verifyHs256(token, encoder.encode(secret));
    }
    const kid = token.header["kid"];
    const entry = typeof kid === "string" ? (scoped ? this.processorKeys : this.platformKeys).get(kid) : undefined;
    if (entry === undefined || entry.alg !== token.alg) {
      throw new JwsError("unknown_kid", "no public key for this token's kid and algorithm");
    }
    await verifyPublic(token, entry.key);
  }

  private checkTimes(claims: JsonObject): void {
    const now = this.clock();
    if (!("exp" in claims)) throw fail(401, "missing_claim", "token lacks the exp claim");
    const exp = claims["exp"];
    const nbf = "nbf" in claims ? claims["nbf"] : 0;
    if (!isNumber(exp) || !isNumber(nbf)) throw fail(401, "invalid_token", "token exp/nbf is not a number");
    if (now > exp + this.leewayS) throw fail(401, "token_expired", "token has expired");
    if (nbf > now + this.leewayS) throw fail(401, "token_not_yet_valid", "token is not valid yet");
  }

  private async owner(retryId: string): Promise<string | null> {
    let owner: string | null;
    try { // within checkTimeoutS: a hung REST API must not hold the request until the processor gives up
      owner = await this.withinTimeout(() => this.ownerOf(retryId));
    } catch { // the database or the REST API is down: retry later, never "not found"
      throw fail(503, "owner_lookup_failed", "the generation's owner could not be looked up");
    }
    return owner === null || owner === undefined ? null : String(owner).toLowerCase();
  }

  private async asService(retryId: string | null, attempt: number | null,
    credential: "secret-key" | "service-role-jwt"): Promise<Principal> {
    if (retryId === null) throw fail(403, "retry_id_required", "service authority needs a retryHistoryId");
    const owner = await this.owner(retryId);
    if (owner === null) throw fail(404, "retry_record_not_found", "Retry record not found");
    return { userId: owner, authority: "service-key", retryHistoryId: retryId, attempt, credential };
  }

  private async asScoped(claims: JsonObject, retryId: string | null, attempt: number | null): Promise<Principal> {
    const jti = claims["jti"];
    const sub = asUuid(claims["sub"]);
    if (!isJti(jti) || claims["role"] === "service_role" ||
      sub === null) {
      throw fail(401, "invalid_scoped_token", "scoped token lacks jti or sub, or claims service_role");
    }
    if (claims["aud"] !== this.generator) {
      throw fail(403, "wrong_audience", `token is for ${JSON.stringify(claims["aud"] ?? null).slice(0, 80)}, not ${this.generator}`);
    }
    if (retryId === null || asUuid(claims["retry_history_id"]) !== retryId) {
      throw fail(403, "retry_id_mismatch", "token is for another generation");
    }
    const tokenAttempt = claims["attempt"];
    if (!isAttempt(tokenAttempt) || (attempt !== null && attempt !== tokenAttempt)) {
      throw fail(403, "attempt_mismatch", "token is for another attempt");
    }
    if (await this.replayCheck(() => this.replay.seen(jti))) {
      throw fail(409, "token_replayed", "this token was already used");
    }
    const owner = await this.owner(retryId);
    if (owner === null) throw fail(404, "retry_record_not_found", "Retry record not found");
    if (owner !== sub) throw fail(403, "not_owner", "token subject is not the generation's owner");
    if (!(await this.replayCheck(() => this.replay.use(jti, (claims["exp"] as number) + this.leewayS)))) {
      throw fail(409, "token_replayed", "this token was already used");
    }
    return { userId: owner, authority: "scoped-jwt", retryHistoryId: retryId, attempt: tokenAttempt,
      credential: "scoped-jwt" };
  }

  /** call()'s answer, or a rejection when it has not come within checkTimeoutS. */
  private async withinTimeout<T>(call: () => T | Promise<T>): Promise<T> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new Error("no answer")), this.checkTimeoutS * 1000);
    });
    try {
      return await Promise.race([Promise.resolve().then(call), late]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * The guard's answer: true or false, within checkTimeoutS. A guard that fails (its database is down), hangs or
   * answers anything else is a 503, like a failed owner look-up: never a pass.
   */
  private async replayCheck(call: () => boolean | Promise<boolean>): Promise<boolean> {
    let answer: unknown;
    try {
      answer = await this.withinTimeout(call);
    } catch {
      throw fail(503, "replay_check_failed", "the token's use could not be checked");
    }
    if (typeof answer !== "boolean") {
      throw fail(503, "replay_check_failed", `the replay guard answered ${typeof answer}, not a boolean`);
    }
    return answer;
  }
}

function retryFields(body: unknown): [string | null, number | null] {
  if (typeof body !== "object" || body === null || Array.isArray(body)) return [null, null];
  const fields = body as Record<string, unknown>;
  const rawId = fields["retryHistoryId"];
  const rawAttempt = fields["retryAttempt"];
  let retryId: string | null = null;
  if (rawId !== undefined && rawId !== null) {
    retryId = asUuid(rawId);
    if (retryId === null) throw fail(400, "bad_retry_history_id", "retryHistoryId must be a UUID");
  }
  let attempt: number | null = null;
  if (rawAttempt !== undefined && rawAttempt !== null) {
    if (!isAttempt(rawAttempt)) throw fail(400, "bad_retry_attempt", "retryAttempt must be a non-negative integer");
    attempt = rawAttempt;
  }
  return [retryId, attempt];
}

function isAttempt(value: unknown): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= 0 && value < 2 ** 31;
}

function isNumber(value: unknown): value is number {
  return typeof value === "number" && Number.isFinite(value);
}

/** The canonical lower-case form of a hyphenated UUID; null for anything else. */
export function asUuid(value: unknown): string | null {
  return typeof value === "string" && UUID_SHAPE.test(value) ? value.toLowerCase() : null;
}

function hasAudience(claims: JsonObject, wanted: string): boolean {
  const aud = claims["aud"];
  return aud === wanted || (Array.isArray(aud) && aud.includes(wanted));
}

function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  let diff = a.length ^ b.length;
  for (let i = 0; i < b.length; i++) diff |= (a[i % Math.max(a.length, 1)] ?? 0) ^ (b[i] ?? 0);
  return diff === 0;
}

// A jti is 1-200 characters (code points, as Python and the database count them, not UTF-16 units) of text
// a database column can keep: no control character (NUL cannot be stored) and no lone surrogate (not
// encodable as UTF-8). Before, such a jti passed here and the SQL replay guard failed: a 503 forever.
const NOT_JTI_TEXT = /[\u0000-\u001f\u007f]|\p{Cs}/u;

function isJti(jti: unknown): jti is string {
  return typeof jti === "string" && jti.length > 0 && !(jti.length > 200 && [...jti].length > 200) &&
    !NOT_JTI_TEXT.test(jti);
}
