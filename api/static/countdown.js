// Seed 000's session timer: mm:ss counted down locally from `expiresAt`, re-synced by every
// session event. The browser's clock may be off; the server's `remainingSeconds` corrects it.

const SKEW_TOLERANCE_MS = 1500; // remainingSeconds is floored: less than this is not skew

export function formatRemaining(ms) {
  const total = Math.max(0, Math.floor(ms / 1000));
  const minutes = Math.floor(total / 60);
  const seconds = total % 60;
  return `${String(minutes).padStart(2, "0")}:${String(seconds).padStart(2, "0")}`;
}

export class Countdown {
  constructor(onTick) {
    this.onTick = onTick;
    this.deadline = null;
    this.timer = null;
  }

  /** Follow a session (the `session` of an order detail); stops unless it is active. */
  sync(session) {
    if (session.status !== "active") return this.stop();
    const expiresAt = Date.parse(session.expiresAt);
    const skew = expiresAt - Date.now() - session.remainingSeconds * 1000;
    this.deadline = Math.abs(skew) < SKEW_TOLERANCE_MS ? expiresAt : expiresAt - skew;
    if (this.timer === null) this.timer = setInterval(() => this.tick(), 250);
    this.tick();
  }

  remaining() {
    return this.deadline === null ? 0 : Math.max(0, this.deadline - Date.now());
  }

  tick() {
    this.onTick(this.remaining());
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
    this.deadline = null;
  }
}
