import { execFile } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Linkage of idle: `static` with gcc and glibc, or `musl`, dynamic against Debian's musl. */
export type IdleLinkage = 'static' | 'musl';

const COMPILERS: Record<IdleLinkage, { program: string; flags: string[]; debianPackage: string }> = {
  static: { program: 'gcc', flags: ['-static'], debianPackage: 'gcc and libc6-dev' },
  musl: { program: 'musl-gcc', flags: [], debianPackage: 'musl-tools' },
};

/** Compiles images/idle/idle.c into `output`, stripped, so an unchanged source gives the same bytes. */
export async function compileIdle(source: string, output: string, linkage: IdleLinkage): Promise<void> {
  const compiler = COMPILERS[linkage];
  await mkdir(path.dirname(output), { recursive: true });
  try {
    await run(compiler.program, [...compiler.flags, '-O2', '-s', '-Wall', '-Wextra', '-Werror', '-o', output, source]);
  } catch (error) {
    const detail = (error as { stderr?: string }).stderr?.trim() || (error as Error).message;
    throw new Error(`Compiling ${source} with ${compiler.program} failed: ${detail}. Install ${compiler.debianPackage} (Debian packages).`);
  }
}
