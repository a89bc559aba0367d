import { readFileSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { cliPath, logEvents, makeSharedDir, superviseArgs, tandem, writePod } from '../support/tandem.js';

const printArgv = 'process.stdout.write(JSON.stringify(process.argv.slice(1)))';

describe('supervise pass-through', () => {
  it('arguments reach the command byte for byte', async () => {
    const args = ['', 'a b', '$x', '*', 'ü ✓', '"quoted"', "it's", '--name', '-- ', 'line\nbreak'];
    const result = await tandem(['supervise', '--', 'node', '-e', printArgv, ...args]);
    expect(result.exitCode).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual(args);
  });

  it('stdin reaches the command', async () => {
    const result = await tandem(['supervise', '--', 'sh', '-c', 'cat; echo end'], { input: 'from stdin\n' });
    expect(result.stdout).toBe('from stdin\nend');
  });

  it('stdout and stderr keep every byte', async () => {
    const result = await tandem(['supervise', '--', 'sh', '-c', 'printf "no newline"; printf "err\\r\\n" >&2'], { stripFinalNewline: false });
    expect(result.stdout).toBe('no newline');
    expect(result.stderr).toContain('err\r\n');
  });

  it('environment and working directory pass through', async () => {
    const result = await tandem(['supervise', '--', 'sh', '-c', 'echo "$GREETING"; pwd'], { env: { GREETING: 'hello there' }, cwd: '/tmp' });
    expect(result.stdout).toBe('hello there\n/tmp');
  });

  it('SIGTERM reaches the command', async () => {
    const child = tandem(['supervise', '--', 'sh', '-c', 'trap "echo got TERM; exit 7" TERM; echo ready; while :; do sleep 0.1; done']);
    await new Promise<void>((resolve) => child.stdout!.on('data', (chunk: Buffer) => chunk.toString().includes('ready') && resolve()));
    child.kill('SIGTERM');
    const result = await child;
    expect(result.exitCode).toBe(7);
    expect(result.stdout).toContain('got TERM');
  });

  it('SIGINT reaches the command', async () => {
    const child = tandem(['supervise', '--', 'sh', '-c', 'trap "exit 8" INT; echo ready; while :; do sleep 0.1; done']);
    await new Promise<void>((resolve) => child.stdout!.on('data', (chunk: Buffer) => chunk.toString().includes('ready') && resolve()));
    child.kill('SIGINT');
    const result = await child;
    expect(result.exitCode).toBe(8);
  });
});

describe('supervise with a closed stdout', () => {
  it('command keeps running after its reader leaves', async () => {
    const shared = makeSharedDir();
    await writePod(shared, [{ name: 'main', role: 'app', priority: 0 }]);
    const command = ['sh', '-c', 'i=0; while [ $i -lt 20000 ]; do echo line $i; i=$((i+1)); done; echo finished >&2'];
    const supervise = ['node', cliPath, ...superviseArgs(shared, 'main', 'app', command)];
    const result = await execa('bash', ['-c', 'set -o pipefail; "$@" | head -n 1', 'bash', ...supervise], { reject: false });

    expect(result.stdout).toBe('line 0');
    expect(result.stderr).toContain('finished');
    expect(logEvents(result.stderr).some((event) => event.event === 'output-closed')).toBe(true);
    expect(readFileSync(path.join(shared, 'logs', 'main', '0.log'), 'utf8')).toContain(' stdout F line 19999\n');
  });
});

describe('supervise without a log copy', () => {
  it('command writes to the container stdout itself', async () => {
    const child = tandem(['supervise', '--', 'sh', '-c', 'readlink /proc/$$/fd/1; sleep 1']);
    const supervisorStdout = await new Promise<string>((resolve) => child.stdout!.once('data', () => resolve(readlinkSync(`/proc/${child.pid}/fd/1`))));
    const result = await child;
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toBe(supervisorStdout);
  });
});
