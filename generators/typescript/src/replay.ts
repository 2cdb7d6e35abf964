// Replay refusal for scoped tokens: a `jti` opens one delivery, once (SPEC section 6: 409 on reuse).

export interface ReplayGuard {
  /** True when this jti was already used (a cheap pre-check, before the owner look-up). */
  seen(jti: string): boolean | Promise<boolean>;
  /** Record a use atomically; false when it was used already. */
  use(jti: string, expiresAt: number): boolean | Promise<boolean>;
}

/**
 * Used jtis kept until their token expires, at most `capacity` of them (oldest dropped first).
 * One isolate only: an edge function running many instances shares a store instead (implement ReplayGuard on a table with a unique jti).
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
