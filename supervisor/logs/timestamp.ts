const wallClockAtStartNs = BigInt(Date.now()) * 1_000_000n;
const monotonicAtStartNs = process.hrtime.bigint();

/**
 * Formats the current time as RFC 3339 with nanoseconds in UTC, as kubelet writes CRI logs.
 * Date has millisecond resolution, so the nanoseconds come from the monotonic clock since start.
 */
export function rfc3339NanoNow(): string {
  const nowNs = wallClockAtStartNs + (process.hrtime.bigint() - monotonicAtStartNs);
  const milliseconds = Number(nowNs / 1_000_000n);
  const seconds = new Date(milliseconds).toISOString().slice(0, 19);
  const fraction = (nowNs % 1_000_000_000n).toString().padStart(9, '0');
  return `${seconds}.${fraction}Z`;
}
