import { execa } from 'execa';
import { mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { delay, isAlive, makeSharedDir, runtimeTandem, waitForOutput } from '../support/tandem.js';

/** Lists the children of a process as [pid, state, command name] from /proc. */
function childrenOf(parentPid: number): { pid: number; state: string; name: string }[] {
  const children = [];
  for (const entry of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue;
    }
    const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    const [state, parent] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(parent) === parentPid) {
      children.push({ pid: Number(entry), state: state!, name });
    }
  }
  return children;
}

// These tests run the runtime that pods get: the launcher starts tini as the supervisor's parent,
// so the execa child's PID is tini's, and orphans of the command are re-parented to it.
describe('supervise reaping through the runtime', () => {
  it('orphans are adopted and reaped', async () => {
    const child = runtimeTandem(['supervise', '--', 'sh', '-c', '(sleep 0.5 &); (sleep 0.5 &); echo spawned; sleep 2']);
    await waitForOutput(child, 'spawned');
    await delay(100);
    const adopted = childrenOf(child.pid!).filter((process) => process.name === 'sleep');
    await delay(1000);
    const zombies = childrenOf(child.pid!).filter((process) => process.state === 'Z');
    const result = await child;

    expect(result.exitCode).toBe(0);
    expect(adopted).toHaveLength(2);
    expect(zombies).toEqual([]);
  });

  it('1000 orphans leave no zombie', async () => {
    // Each orphan sleeps 2 s, long enough that many are still alive when a loaded machine has
    // spent a few seconds forking all of them, and the check comes 2.5 s after the last one.
    const script = 'i=0; while [ $i -lt 1000 ]; do (sleep 2 &); i=$((i+1)); done; echo spawned; sleep 3.5';
    const child = runtimeTandem(['supervise', '--', 'sh', '-c', script]);
    await waitForOutput(child, 'spawned');
    const adopted = childrenOf(child.pid!).filter((process) => process.name === 'sleep').length;
    await delay(2500);
    const remaining = childrenOf(child.pid!).filter((process) => process.name === 'sleep' || process.state === 'Z');
    const result = await child;

    expect(result.exitCode).toBe(0);
    expect(adopted).toBeGreaterThan(100);
    expect(remaining).toEqual([]);
  });

  it('killed background job leaves no zombie', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'tandem-zombie-'));
    const script = `(sleep 30 & echo $! > ${dir}/bg); sleep 0.5; kill $(cat ${dir}/bg); sleep 0.5; tini=$(cut -d' ' -f4 /proc/$PPID/stat); ps -o stat= --ppid $tini > ${dir}/st`;
    const result = await runtimeTandem(['supervise', '--', 'sh', '-c', script]);

    expect(result.exitCode).toBe(0);
    const states = readFileSync(path.join(dir, 'st'), 'utf8').split('\n').filter(Boolean);
    expect(states.length).toBeGreaterThan(0);
    expect(states.filter((state) => state.startsWith('Z'))).toEqual([]);
  });

  it('leftovers are stopped after the command exits', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'tandem-leftover-'));
    const startedAt = Date.now();
    const result = await runtimeTandem(['supervise', '--leftover-wait', '300ms', '--', 'sh', '-c', `sleep 1000 & echo $! > ${dir}/pid; exit 6`]);

    expect(result.exitCode).toBe(6);
    expect(Date.now() - startedAt).toBeLessThan(3000);
    expect(isAlive(Number(readFileSync(path.join(dir, 'pid'), 'utf8')))).toBe(false);
  });

  it('leftover ignoring TERM is killed', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'tandem-leftover-'));
    const script = `sh -c 'trap "" TERM; echo $$ > ${dir}/pid; while :; do sleep 0.05; done' & sleep 0.3; exit 0`;
    const result = await runtimeTandem(['supervise', '--leftover-wait', '200ms', '--stop-timeout', '500ms', '--', 'sh', '-c', script]);

    expect(result.exitCode).toBe(0);
    expect(isAlive(Number(readFileSync(path.join(dir, 'pid'), 'utf8')))).toBe(false);
    expect(result.stderr).toContain('"event":"leftovers-kill"');
  });

  it('neighbour processes are never signalled', async () => {
    const neighbour = execa('sleep', ['30'], { reject: false });
    const child = runtimeTandem(['supervise', '--', 'sh', '-c', 'echo ready; sleep 1000']);
    await waitForOutput(child, 'ready');
    child.kill('SIGTERM');
    const result = await child;

    expect(result.exitCode).toBe(143);
    expect(isAlive(neighbour.pid!)).toBe(true);
    neighbour.kill();
  });

  it('reaper variable stays out of the command', async () => {
    const result = await runtimeTandem(['supervise', '--', 'sh', '-c', 'echo "reaper=${TANDEM_REAPER_PID:-unset}"']);
    expect(result.stdout).toBe('reaper=unset');
  });
});

describe('supervise environment through the runtime', () => {
  it('set-aside variables reach the command', async () => {
    const script = 'echo "$NODE_OPTIONS|$NODE_COMPILE_CACHE|$TINI_KILL_PROCESS_GROUP|$TINI_VERBOSITY|${TANDEM_APP_NODE_OPTIONS:-unset}"';
    const cache = makeSharedDir();
    const result = await runtimeTandem(['supervise', '--', 'sh', '-c', script], {
      env: { NODE_OPTIONS: '--max-old-space-size=64', NODE_COMPILE_CACHE: cache, TINI_KILL_PROCESS_GROUP: '1', TINI_VERBOSITY: '3' },
    });
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toBe(`--max-old-space-size=64|${cache}|1|3|unset`);
    // tandem's own Node.js kept its runtime's cache and wrote nothing into the app's.
    expect(readdirSync(cache).filter((entry) => !['state', 'logs'].includes(entry))).toEqual([]);
  });
});
