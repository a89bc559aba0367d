import { type Command, Option } from 'commander';
import type { LogLevel } from '../../supervisor/log-levels.js';
import { parseLogLevel } from '../../supervisor/config/parse.js';

interface InstallFlags {
  podJson?: string;
  logLevel: LogLevel;
}

/** Registers `tandem install`, which the init container of a pod runs to fill the shared volume. */
export function addInstallCommand(program: Command): void {
  program
    .command('install')
    .description(
      'Copy the self-contained tandem runtime (launcher, Node.js, its shared libraries, app) into DIR, ' +
        'create DIR/state and DIR/logs with mode 1777, and write the pod spec. Skips the copy when DIR has the same runtime.',
    )
    .argument('<dir>', 'target directory, usually the shared emptyDir mounted at /tandem; created when missing')
    .option('--pod-json <json>', 'pod spec as JSON, validated and written to DIR/state/pod.json (default: none, keep the existing file)')
    .addOption(
      new Option('--log-level <level>', "level of tandem's own JSON logs on stderr").env('TANDEM_LOG_LEVEL').argParser(parseLogLevel).default('info'),
    )
    .action(async (dir: string, flags: InstallFlags) => {
      const [{ installRuntime }, { createLogger }] = await Promise.all([import('./install.js'), import('../../supervisor/log.js')]);
      try {
        await installRuntime(dir, { podJson: flags.podJson, logger: createLogger(flags.logLevel, { command: 'install' }) });
      } catch (error) {
        // Failures here are about files and the pod spec, not usage, so no help text follows.
        process.stderr.write(`tandem install: ${(error as Error).message}\n`);
        process.exitCode = 1;
      }
    });
}
