import type { Logger } from '../log.js';
import type { PodContext } from '../lifecycle/pod-context.js';
import type { ContainerRecord, HandoffRecord } from '../protocol/record.js';
import type { Records } from '../protocol/store.js';
import { compareVersions, isEmptySlot, replaces, type Slot } from './slot.js';

/**
 * The hand-off protocol between the two slots of a hot-upgrade sidecar, over their records in the
 * shared volume. The slot that takes over writes its steps in `handoff`. The old slot reacts to
 * the `draining-peer` step by stopping its command and writing `parked` with `drained`.
 */

/** Decision a slot makes when its container starts. */
export type SlotPlan = { kind: 'park'; reason: string } | { kind: 'start' } | { kind: 'take-over'; peer: ContainerRecord };

/** Steps of a hand-off in progress: the peer is busy and a new hand-off waits its turn. */
const BUSY_STEPS = new Set<HandoffRecord['phase']>(['starting', 'draining-peer']);

function versionOf(record: ContainerRecord, slot: Slot): string {
  return record.slotVersion ?? slot.altVersion ?? '?';
}

/**
 * Reports whether this slot starts first when both slots wait for their turn: the lower version
 * does, or slot 1 when the versions cannot be ordered. The other then takes over from it.
 */
function startsFirst(slot: Slot, peerVersion: string): boolean {
  const order = compareVersions(slot.version, peerVersion);
  return order === 0 ? slot.name.endsWith('-1') : order < 0;
}

/** Decides from the records; undefined while the peer is in a step that this slot must wait out. */
function decide(slot: Slot, records: Records): SlotPlan | undefined {
  const peer = records.get(slot.peer);
  if (peer === undefined || peer.phase === 'exited' || peer.phase === 'parked') {
    return { kind: 'start' };
  }
  const peerVersion = versionOf(peer, slot);
  if (peer.phase === 'ready' && !BUSY_STEPS.has(peer.handoff?.phase as HandoffRecord['phase'])) {
    if (replaces(slot.version, peerVersion, peer.handoff?.fromVersion)) {
      return { kind: 'take-over', peer };
    }
    return { kind: 'park', reason: `${slot.peer} serves version ${peerVersion}, which version ${slot.version} does not replace` };
  }
  if (peer.phase === 'waiting' && peer.handoff?.phase === 'waiting-turn' && startsFirst(slot, peerVersion)) {
    return { kind: 'start' };
  }
  return undefined;
}

/**
 * Decides what a slot does at start: park in the empty slot or behind a newer version, start
 * alone when the other slot serves nothing, or take over from it. While the other slot is
 * starting or in a hand-off of its own, this one waits its turn. Rejects when `shutdown` aborts.
 */
export async function planSlot(slot: Slot, context: PodContext, shutdown: AbortSignal, log: Logger): Promise<SlotPlan> {
  if (isEmptySlot(slot)) {
    return { kind: 'park', reason: 'empty slot (version 0)' };
  }
  const immediate = decide(slot, context.store.records);
  if (immediate !== undefined) {
    return immediate;
  }

  const peer = context.store.records.get(slot.peer)!;
  log.info({ event: 'handoff-waiting-turn', peer: slot.peer, peerPhase: peer.phase, peerHandoff: peer.handoff?.phase }, `${slot.peer} is ${peer.handoff?.phase ?? peer.phase}; waiting for it before taking over`);
  await context.writer.update('waiting', {
    slotVersion: slot.version,
    handoff: { phase: 'waiting-turn', from: slot.peer, fromVersion: versionOf(peer, slot), fromGeneration: peer.generation, requestedAt: new Date().toISOString() },
  });
  return context.store.until((records) => decide(slot, records), shutdown);
}

/** A take-over in progress, written to this slot's record step by step. */
export class Takeover {
  private readonly startedAt = performance.now();
  private state: HandoffRecord;

  constructor(
    readonly slot: Slot,
    readonly peer: ContainerRecord,
    private readonly context: PodContext,
    private readonly log: Logger,
  ) {
    this.state = { phase: 'starting', from: peer.name, fromVersion: versionOf(peer, slot), fromGeneration: peer.generation, requestedAt: new Date().toISOString() };
  }

  get record(): HandoffRecord {
    return this.state;
  }

  /** Fields for the record when the take-over starts. */
  begin(): HandoffRecord {
    this.log.info({ event: 'handoff-started', from: this.peer.name, fromVersion: this.state.fromVersion, version: this.slot.version }, `taking over from ${this.peer.name} (version ${this.state.fromVersion} to ${this.slot.version})`);
    return this.state;
  }

  /** Fields for the `ready` record: the new version serves, and the old slot is asked to drain. */
  ready(): HandoffRecord {
    this.state = { ...this.state, phase: 'draining-peer', readyAt: new Date().toISOString() };
    return this.state;
  }

  /**
   * Waits until the old slot has drained (parked, exited, or restarted as another generation),
   * or until `timeoutMs`, and writes the end of the hand-off.
   */
  async finish(timeoutMs: number, cancel: AbortSignal): Promise<void> {
    const peerName = this.peer.name;
    const outcome = await this.context.store
      .until((records) => peerDone(records.get(peerName), this.state.fromGeneration, this.context.self.name), AbortSignal.any([cancel, AbortSignal.timeout(timeoutMs)]))
      .catch(() => (cancel.aborted ? undefined : 'timeout'));
    if (outcome === undefined) {
      return;
    }
    const durationMs = Math.round(performance.now() - this.startedAt);
    const reason = outcome === 'timeout' ? `${peerName} did not report its drain within ${timeoutMs} ms` : undefined;
    this.state = { ...this.state, phase: 'done', doneAt: new Date().toISOString(), durationMs, ...(reason ? { reason } : {}) };
    this.log.info({ event: 'handoff-done', from: peerName, durationMs, peer: outcome }, `took over from ${peerName} in ${durationMs} ms`);
    await this.context.writer.update(this.context.writer.record.phase, { handoff: this.state });
  }

  /** Writes a failed take-over: the new version did not become ready, and the old one keeps serving. */
  failureFields(reason: string): { handoff: HandoffRecord } {
    this.state = { ...this.state, phase: 'failed', doneAt: new Date().toISOString(), durationMs: Math.round(performance.now() - this.startedAt), reason };
    this.log.error({ event: 'handoff-failed', from: this.peer.name, reason }, `the upgrade from ${this.peer.name} failed: ${reason}; ${this.peer.name} keeps serving`);
    return { handoff: this.state };
  }
}

/** Returns how the old slot's part ended, or undefined while it still drains. */
function peerDone(peer: ContainerRecord | undefined, generation: number, self: string): string | undefined {
  if (peer === undefined || peer.generation !== generation) {
    return 'restarted';
  }
  if (peer.phase === 'exited') {
    return 'exited';
  }
  if (peer.phase === 'parked' && peer.drained?.for === self) {
    return 'drained';
  }
  return undefined;
}

/**
 * Resolves with the other slot's record once it requests a drain of this slot's current
 * generation. Rejects when `cancel` aborts.
 */
export function drainRequested(slot: Slot, context: PodContext, cancel: AbortSignal): Promise<{ by: ContainerRecord }> {
  return context.store.until((records) => {
    const peer = records.get(slot.peer);
    const handoff = peer?.handoff;
    // A dead requester keeps its last handoff fields in the record made up for it, so its phase counts too.
    if (peer?.phase === 'ready' && handoff?.phase === 'draining-peer' && handoff.from === context.self.name && handoff.fromGeneration === context.writer.record.generation) {
      return { by: peer };
    }
    return undefined;
  }, cancel);
}
