// Replay refusal for scoped tokens: a `jti` opens one delivery, once (SPEC section 6: 409 on reuse).
import type { Query } from "./lifecycle.ts";

/** A guard that throws (its database is down) makes the verifier answer 503 `replay_check_failed`. */
export interface ReplayGuard {
  /** True when this jti was already used (a cheap pre-check, before the owner look-up). */
  seen(jti: string): boolean | Promise<boolean>;
  /** Record a use atomically; false when it was used already. */
  use(jti: string, expiresAt: number): boolean | Promise<boolean>;
}

/**
 * Used jtis kept until their token expires, at most `capacity` of them (oldest dropped first).
 * One isolate only: an edge function running many instances shares the database's guard instead (SqlReplayGuard).
 */
export class MemoryReplayGuard implements ReplayGuard {
  private readonly used = new Map<string, number>();
  private readonly capacity: number;
  private readonly clock: () => number;

  constructor(options: { capacity?: number; clock?: () => number } = {}) {
    this.capacity = options.capacity ?? 100_000;
    this.clock = options.clock ?? (() => Date.now() / 1000);
  }

  seen(jti: string): boolean {
    return this.used.has(jti);
  }

  use(jti: string, expiresAt: number): boolean {
    const now = this.clock();
    for (const [oldest, expiry] of this.used) {
      if (expiry >= now && this.used.size < this.capacity) break;
      this.used.delete(oldest);
    }
    if (this.used.has(jti)) return false;
    this.used.set(jti, expiresAt);
    return true;
  }
}

/**
 * Used jtis in the database (genretry.use_token, genretry.token_seen): one guard for every instance and isolate
 * of a generator. `query` runs as a role holding genretry_generator (postgresQuery(sql) on postgres.js).
 */
export class SqlReplayGuard implements ReplayGuard {
  constructor(private readonly query: Query) {}

  async seen(jti: string): Promise<boolean> {
    const rows = await this.query("SELECT genretry.token_seen($1::text) AS seen", [jti]);
    return rows[0]?.["seen"] === true;
  }

  async use(jti: string, expiresAt: number): Promise<boolean> {
    // the expiry bounded before to_timestamp, which raises past year 294276 (the database caps it at 2 hours)
    const rows = await this.query(
      "SELECT genretry.use_token($1::text, to_timestamp(greatest(least($2::float8, 1e10), 0))) AS fresh",
      [jti, expiresAt]);
    return rows[0]?.["fresh"] === true;
  }
}
