import { execa } from 'execa';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { cliPath, delay, isAlive, tandem, waitForOutput } from '../support/tandem.js';

/** A shell that reports each signal it gets on stdout and keeps running. */
const REPORTER = 'for s in HUP INT QUIT USR1 USR2 WINCH; do trap "echo got $s" $s; done; trap "echo got TERM; exit 0" TERM; echo ready; while :; do sleep 0.05; done';

describe('supervise signals', () => {
  it.each(['SIGHUP', 'SIGINT', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGWINCH'] as const)('%s is forwarded as is', async (signal) => {
    const child = tandem(['supervise', '--', 'sh', '-c', REPORTER]);
    await waitForOutput(child, 'ready');
    child.kill(signal);
    await waitForOutput(child, `got ${signal.slice(3)}`);
    child.kill('SIGTERM');
    const result = await child;
    expect(result.stdout).toContain(`got ${signal.slice(3)}`);
    expect(result.exitCode).toBe(0);
  });

  it('SIGTERM sends the configured stop signal', async () => {
    const child = tandem(['supervise', '--stop-signal', 'QUIT', '--', 'sh', '-c', 'trap "echo got QUIT; exit 5" QUIT; trap "echo got TERM; exit 6" TERM; echo ready; while :; do sleep 0.05; done']);
    await waitForOutput(child, 'ready');
    child.kill('SIGTERM');
    const result = await child;
    expect(result.stdout).toContain('got QUIT');
    expect(result.exitCode).toBe(5);
  });

  it.each(['SIGURG', 'SIGCHLD', 'SIGPIPE'] as const)('%s never stops the command', async (signal) => {
    const child = tandem(['supervise', '--', 'sh', '-c', 'echo ready; while :; do sleep 0.05; done']);
    await waitForOutput(child, 'ready');
    child.kill(signal);
    await delay(300);
    expect(child.exitCode).toBeNull();
    child.kill('SIGTERM');
    const result = await child;
    expect(result.exitCode).toBe(143);
  });

  it('shell that does not forward TERM stops at once', async () => {
    const child = tandem(['supervise', '--stop-timeout', '10s', '--', 'sh', '-c', 'echo ready; sleep 1000; echo after']);
    await waitForOutput(child, 'ready');
    const startedAt = Date.now();
    child.kill('SIGTERM');
    const result = await child;
    expect(Date.now() - startedAt).toBeLessThan(2000);
    // tree-kill signals children before their parent, so the shell may still run `echo after` and exit 0.
    expect([0, 143]).toContain(result.exitCode);
    expect(result.stderr).not.toContain('"event":"kill"');
  });

  it('setsid escapee gets the signal', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'tandem-escapee-'));
    const escapee = `trap "echo escapee got TERM > ${dir}/got; exit 0" TERM; echo $$ > ${dir}/pid; while :; do sleep 0.05; done`;
    const child = tandem(['supervise', '--', 'sh', '-c', `setsid sh -c '${escapee}' & echo ready; wait`]);
    await waitForOutput(child, 'ready');
    await delay(300);
    child.kill('SIGTERM');
    await child;

    expect(readFileSync(path.join(dir, 'got'), 'utf8')).toBe('escapee got TERM\n');
    expect(isAlive(Number(readFileSync(path.join(dir, 'pid'), 'utf8')))).toBe(false);
  });

  it('stop timeout ends with SIGKILL', async () => {
    const child = tandem(['supervise', '--stop-timeout', '1s', '--', 'sh', '-c', 'trap "" TERM; echo ready; while :; do sleep 0.05; done']);
    await waitForOutput(child, 'ready');
    const startedAt = Date.now();
    child.kill('SIGTERM');
    const result = await child;
    const elapsedMs = Date.now() - startedAt;

    expect(result.exitCode).toBe(137);
    expect(elapsedMs).toBeGreaterThanOrEqual(1000);
    expect(elapsedMs).toBeLessThan(3000);
  });

  it('flag wins over its environment variable', async () => {
    const child = tandem(['supervise', '--stop-timeout', '1s', '--', 'sh', '-c', 'trap "" TERM; echo ready; while :; do sleep 0.05; done'], { env: { TANDEM_STOP_TIMEOUT: '60s' } });
    await waitForOutput(child, 'ready');
    const startedAt = Date.now();
    child.kill('SIGTERM');
    const result = await child;
    expect(result.exitCode).toBe(137);
    expect(Date.now() - startedAt).toBeLessThan(3000);
  });

  it('PID 1 supervisor reacts to SIGTERM', async () => {
    // In a new PID namespace the supervisor is PID 1, where the kernel drops signals that have no handler.
    const child = execa('unshare', ['--pid', '--fork', '--mount-proc', 'node', cliPath, 'supervise', '--', 'sh', '-c', 'echo ready; sleep 1000'], { reject: false });
    await waitForOutput(child, 'ready');
    const { stdout } = await execa('ps', ['-o', 'pid=', '--ppid', String(child.pid)]);
    const supervisorPid = Number(stdout.trim());
    process.kill(supervisorPid, 'SIGTERM');

    const result = await child;
    expect(result.exitCode).toBe(143);
  });

  it('environment values never reach the logs', async () => {
    const result = await tandem(['supervise', '--log-level', 'trace', '--', 'sh', '-c', 'exit 4'], { env: { DATABASE_PASSWORD: 'hunter2-secret' } });
    expect(result.exitCode).toBe(4);
    expect(result.stderr).not.toContain('hunter2-secret');
  });

  it('help gives units and defaults', async () => {
    const result = await tandem(['supervise', '--help']);
    const help = result.stdout.replace(/\s+/g, ' ');
    expect(help).toContain('--stop-timeout <duration>');
    expect(help).toContain('(default: 10s, env: TANDEM_STOP_TIMEOUT)');
    expect(help).toContain('(default: 10Mi, env: TANDEM_LOG_MAX_SIZE)');
  });
});
