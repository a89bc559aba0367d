import { describe, expect, it } from 'vitest';
import { tandem } from '../support/tandem.js';

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
