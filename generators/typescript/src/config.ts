// The keys a generator verifies with, read only from names the platform injects or allows.
// Injected by the platform: SUPABASE_SECRET_KEYS, SUPABASE_SERVICE_ROLE_KEY (legacy), SUPABASE_JWKS.
// Set by you as function secrets (custom names cannot start with SUPABASE_):
//   GENRETRY_PROCESSOR_JWKS    the processor's public JWKS (`processor keygen` prints it): scoped ES256 tokens
//   GENRETRY_PROCESSOR_SECRET  the processor's shared secret, only if it signs HS256 (PROCESSOR_JWT_SECRET)
//   GENRETRY_LEGACY_JWT_SECRET the project's legacy JWT secret, only to accept HS256 user tokens
import type { Keys } from "./authority.ts";

export type Env = (name: string) => string | undefined;

/** A configuration problem: one line naming the setting. */
export class ConfigError extends Error {}

function parseJson(name: string, raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    throw new ConfigError(`${name}: not valid JSON`);
  }
}

function jwks(name: string, raw: string | undefined): unknown {
  if (!raw) return undefined;
  const parsed = parseJson(name, raw);
  if (typeof parsed !== "object" || parsed === null || !Array.isArray((parsed as { keys?: unknown }).keys)) {
    throw new ConfigError(`${name}: expected {"keys": [...]}`);
  }
  return parsed;
}

function secretKeys(raw: string | undefined): Record<string, string> {
  if (!raw) return {};
  if (!raw.startsWith("{")) return { default: raw };
  const parsed = parseJson("SUPABASE_SECRET_KEYS", raw);
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed) ||
    !Object.values(parsed).every((v) => typeof v === "string" && v)) {
    throw new ConfigError("SUPABASE_SECRET_KEYS: expected a JSON object of non-empty strings");
  }
  return parsed as Record<string, string>;
}

/** Keys from the environment (Deno.env.get or process.env); throws ConfigError naming the setting. */
export function keysFromEnv(env: Env): Keys {
  const get = (name: string) => env(name)?.trim() || undefined;
  const keys: Keys = {
    secretKeys: secretKeys(get("SUPABASE_SECRET_KEYS")),
    serviceRoleKey: get("SUPABASE_SERVICE_ROLE_KEY") ?? "",
    platformJwtSecret: get("GENRETRY_LEGACY_JWT_SECRET") ?? "",
    platformJwks: jwks("SUPABASE_JWKS", get("SUPABASE_JWKS")),
    processorJwks: jwks("GENRETRY_PROCESSOR_JWKS", get("GENRETRY_PROCESSOR_JWKS")),
    processorSecret: get("GENRETRY_PROCESSOR_SECRET") ?? "",
  };
  if (!keys.processorJwks && !keys.processorSecret && !keys.serviceRoleKey &&
    Object.keys(keys.secretKeys ?? {}).length === 0) {
    throw new ConfigError("GENRETRY_PROCESSOR_JWKS: required to accept the processor's scoped tokens " +
      "(or SUPABASE_SECRET_KEYS for service-key mode)");
  }
  return keys;
}
