import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { cliPath, logEvents, makeSharedDir, superviseArgs, tandem, writePod } from '../support/tandem.js';

const CRI_LINE = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}Z) (stdout|stderr) (F|P) (.*)$/;

describe('supervise log copy', () => {
  it('writes CRI lines and passes output through', async () => {
    const shared = makeSharedDir();
    await writePod(shared, [{ name: 'web', role: 'app', priority: 0 }]);
    const script = 'echo "first line"; echo "to stderr" >&2; printf "no newline at end"';
    const result = await tandem(superviseArgs(shared, 'web', 'app', ['sh', '-c', script]), { stripFinalNewline: false });

    expect(result.exitCode).toBe(0);
    expect(result.stdout).toBe('first line\nno newline at end');
    expect(result.stderr).toContain('to stderr\n');

    const lines = readFileSync(path.join(shared, 'logs', 'web', '0.log'), 'utf8').trimEnd().split('\n');
    const parsed = lines.map((line) => CRI_LINE.exec(line));
    expect(parsed.every((match) => match !== null)).toBe(true);
    const records = parsed.map((match) => [match![2], match![3], match![4]]);
    expect(records).toContainEqual(['stdout', 'F', 'first line']);
    expect(records).toContainEqual(['stderr', 'F', 'to stderr']);
    expect(records).toContainEqual(['stdout', 'F', 'no newline at end']);
  });

  it('splits long lines into partial records', async () => {
    const shared = makeSharedDir();
    await writePod(shared, [{ name: 'web', role: 'app', priority: 0 }]);
    const result = await tandem(superviseArgs(shared, 'web', 'app', ['node', '-e', 'console.log("x".repeat(40000))']));
    expect(result.exitCode).toBe(0);

    const lines = readFileSync(path.join(shared, 'logs', 'web', '0.log'), 'utf8').trimEnd().split('\n');
    const tags = lines.map((line) => CRI_LINE.exec(line)![3]);
    expect(tags).toEqual(['P', 'P', 'F']);
    const content = lines.map((line) => CRI_LINE.exec(line)![4]).join('');
    expect(content).toBe('x'.repeat(40000));
  });

  it('second run of a container logs to 1.log', async () => {
    const shared = makeSharedDir();
    await writePod(shared, [{ name: 'web', role: 'app', priority: 0 }], 'OnFailure');
    await tandem(superviseArgs(shared, 'web', 'app', ['sh', '-c', 'echo run one; exit 1']));
    await tandem(superviseArgs(shared, 'web', 'app', ['sh', '-c', 'echo run two']));

    expect(readFileSync(path.join(shared, 'logs', 'web', '0.log'), 'utf8')).toContain('run one');
    expect(readFileSync(path.join(shared, 'logs', 'web', '1.log'), 'utf8')).toContain('run two');
  });
});

describe('supervise log copy under load', () => {
  it('100 MB pass through unchanged and copied', async () => {
    const shared = makeSharedDir();
    await writePod(shared, [{ name: 'web', role: 'app', priority: 0 }]);
    const outputFile = path.join(shared, 'stdout.bin');
    // 75 MB of random bytes as base64 in lines of 100 characters: about 101 MB of text.
    const script = 'head -c 75000000 /dev/urandom | base64 -w 100 | tee "$0/expected.txt"';
    // The supervisor writes into a pipe, as it does in a container, and cat saves what comes out.
    const supervise = ['node', cliPath, ...superviseArgs(shared, 'web', 'app', ['sh', '-c', script, shared], ['--log-max-size', '1Gi'])];
    const result = await execa('bash', ['-c', 'set -o pipefail; "$@" | cat > "$OUTPUT_FILE"', 'bash', ...supervise], { env: { OUTPUT_FILE: outputFile }, reject: false });
    expect(result.stderr).not.toContain('"level":"error"');
    expect(result.exitCode).toBe(0);

    const expected = readFileSync(path.join(shared, 'expected.txt'));
    expect(expected.length).toBeGreaterThan(100_000_000);
    expect(sha256(readFileSync(outputFile))).toBe(sha256(expected));

    const lines = readFileSync(path.join(shared, 'logs', 'web', '0.log'), 'utf8').split('\n');
    lines.pop();
    const expectedLines = expected.toString('utf8').split('\n');
    expectedLines.pop();
    expect(lines.length).toBe(expectedLines.length);
    const mismatch = lines.findIndex((line, index) => !line.endsWith(` stdout F ${expectedLines[index]}`));
    expect(mismatch).toBe(-1);
  }, 120_000);

  it('rotates at the size limit', async () => {
    const shared = makeSharedDir();
    await writePod(shared, [{ name: 'web', role: 'app', priority: 0 }]);
    const script = 'i=0; while [ $i -lt 200 ]; do echo "line $i $(printf %080d 0)"; i=$((i+1)); done';
    const result = await tandem(superviseArgs(shared, 'web', 'app', ['sh', '-c', script], ['--log-max-size', '4Ki', '--log-max-files', '3']));
    expect(result.exitCode).toBe(0);

    const files = readdirSync(path.join(shared, 'logs', 'web')).sort();
    expect(files).toEqual(['0.log', '0.log.1', '0.log.2']);
    for (const file of files) {
      expect(statSync(path.join(shared, 'logs', 'web', file)).size).toBeLessThanOrEqual(4096);
    }
    expect(readFileSync(path.join(shared, 'logs', 'web', '0.log'), 'utf8')).toContain('line 199 ');
  });

  it('tiny rotation keeps order and sizes', async () => {
    const shared = makeSharedDir();
    await writePod(shared, [{ name: 'web', role: 'app', priority: 0 }]);
    const script = 'i=0; while [ $i -lt 20000 ]; do echo "n=$i"; i=$((i+1)); done';
    const result = await tandem(superviseArgs(shared, 'web', 'app', ['sh', '-c', script], ['--log-max-size', '1Ki', '--log-max-files', '3']));
    expect(result.exitCode).toBe(0);

    const directory = path.join(shared, 'logs', 'web');
    expect(readdirSync(directory).sort()).toEqual(['0.log', '0.log.1', '0.log.2']);
    const numbers = ['0.log.2', '0.log.1', '0.log'].flatMap((file) => {
      expect(statSync(path.join(directory, file)).size).toBeLessThanOrEqual(1024);
      return readFileSync(path.join(directory, file), 'utf8').trim().split('\n').map((line) => Number(line.split('n=')[1]));
    });
    expect(numbers.at(-1)).toBe(19999);
    expect(numbers.every((number, index) => index === 0 || number === numbers[index - 1]! + 1)).toBe(true);
    // A rotated file is filled up to the limit, less than one record of about 50 bytes short.
    for (const file of ['0.log.2', '0.log.1']) {
      expect(statSync(path.join(directory, file)).size).toBeGreaterThan(1024 - 64);
    }
  });

  it('full log disk drops records, never the app', async () => {
    const shared = makeSharedDir();
    await writePod(shared, [{ name: 'web', role: 'app', priority: 0 }]);
    // A 64 KiB tmpfs as the log directory fills after a few hundred records.
    await execa('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tandem-full', path.join(shared, 'logs')]);
    try {
      const script = 'i=0; while [ $i -lt 5000 ]; do echo "record $i $(printf %080d 0)"; i=$((i+1)); done; echo done';
      const result = await tandem(superviseArgs(shared, 'web', 'app', ['sh', '-c', script], ['--log-max-size', '1Mi']));

      expect(result.exitCode).toBe(0);
      expect(result.stdout.split('\n')).toHaveLength(5001);
      expect(result.stdout.endsWith('done')).toBe(true);
      const dropped = logEvents(result.stderr).find((event) => event.event === 'log-copy-dropped');
      expect(dropped?.droppedRecords).toBeGreaterThan(0);
      expect(logEvents(result.stderr).some((event) => event.event === 'log-copy-dropping' && String(event.msg).includes('ENOSPC'))).toBe(true);
    } finally {
      await execa('umount', [path.join(shared, 'logs')]);
    }
  });
});

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}
