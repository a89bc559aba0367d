import { describe, expect, it } from 'vitest';
import { escapeExpansion, originalArgv, type ImageConfig } from '../../agent/inject/argv.js';
import { InjectError } from '../../agent/inject/errors.js';
import type { Container, PodTemplateSpec } from '../../agent/inject/k8s.js';
import { describeContainers } from '../../agent/inject/roles.js';
import { injectTandem, isTandemInjected, type TransformOptions } from '../../agent/inject/transform.js';
import { parsePodSpec } from '../../supervisor/protocol/pod.js';

const OWNER = 'Deployment/test';

function template(containers: Container[], annotations?: Record<string, string>, extra: Record<string, unknown> = {}): PodTemplateSpec {
  return {
    metadata: { labels: { app: 'test' }, ...(annotations ? { annotations } : {}) },
    spec: { containers, ...extra },
  };
}

function options(imageConfigs: Record<string, ImageConfig> = {}, overrides: Partial<TransformOptions> = {}): TransformOptions {
  return { image: 'localhost/tandem:test', keepStdlog: false, imageConfigs: new Map(Object.entries(imageConfigs)), owner: OWNER, ...overrides };
}

function injected(input: PodTemplateSpec, transformOptions: TransformOptions = options()) {
  const result = injectTandem(input, transformOptions);
  if (result.status !== 'injected') {
    throw new Error(`expected injection, got ${result.status}`);
  }
  return result;
}

function podJsonOf(result: PodTemplateSpec): string {
  const init = result.spec.initContainers?.[0];
  expect(init?.name).toBe('tandem-init');
  const command = init!.command!;
  expect(command.slice(0, 4)).toEqual(['/opt/tandem/bin/tandem', 'install', '/tandem', '--pod-json']);
  return command[4]!;
}

function supervise(name: string, role: string, priority: number): string[] {
  return ['/tandem/bin/tandem', 'supervise', '--name', name, '--role', role, '--priority', String(priority), '--shared-dir', '/tandem', '--'];
}

describe('original argv', () => {
  const config: ImageConfig = { entrypoint: ['/entry', '--flag'], cmd: ['default-arg'], source: 'test' };

  it('uses command and args when command is set', () => {
    const argv = originalArgv({ name: 'c', image: 'i', command: ['/bin/run'], args: ['a', '$(HOME)'] }, undefined, OWNER);
    expect(argv).toEqual(['/bin/run', 'a', '$(HOME)']);
  });

  it('uses command alone when args is empty', () => {
    expect(originalArgv({ name: 'c', image: 'i', command: ['/bin/run'] }, undefined, OWNER)).toEqual(['/bin/run']);
  });

  it('uses ENTRYPOINT with args when only args is set', () => {
    expect(originalArgv({ name: 'c', image: 'i', args: ['x'] }, config, OWNER)).toEqual(['/entry', '--flag', 'x']);
  });

  it('uses ENTRYPOINT and CMD when neither is set', () => {
    expect(originalArgv({ name: 'c', image: 'i' }, config, OWNER)).toEqual(['/entry', '--flag', 'default-arg']);
  });

  it('treats an empty command list as unset', () => {
    expect(originalArgv({ name: 'c', image: 'i', command: [], args: ['x'] }, config, OWNER)).toEqual(['/entry', '--flag', 'x']);
  });

  it('escapes expansion in image strings only', () => {
    const risky: ImageConfig = { entrypoint: ['/bin/sh', '-c', 'echo $(date) $$(id) $HOME'], cmd: [], source: 'test' };
    const argv = originalArgv({ name: 'c', image: 'i', args: ['$(POD_NAME)'] }, risky, OWNER);
    expect(argv).toEqual(['/bin/sh', '-c', 'echo $$(date) $$$$(id) $HOME', '$(POD_NAME)']);
  });

  it('rejects an image with nothing to run', () => {
    const empty: ImageConfig = { entrypoint: [], cmd: [], source: 'annotation entrypoint.tandem.dev/c' };
    expect(() => originalArgv({ name: 'c', image: 'scratch-app' }, empty, OWNER)).toThrow(/has nothing to run.*scratch-app/);
  });
});

describe('expansion escaping', () => {
  // The kubelet's expansion: `$$` becomes `$`, `$(NAME)` is replaced when NAME is defined, and any
  // other `$` stays. This model checks that escaped strings come back unchanged.
  function kubeletExpand(text: string, variables: Record<string, string>): string {
    let output = '';
    for (let index = 0; index < text.length; index++) {
      const character = text[index];
      if (character !== '$' || index + 1 >= text.length) {
        output += character;
        continue;
      }
      const next = text[index + 1];
      if (next === '$') {
        output += '$';
        index++;
      } else if (next === '(') {
        const close = text.indexOf(')', index + 2);
        if (close === -1) {
          output += '$(';
          index++;
          continue;
        }
        const name = text.slice(index + 2, close);
        output += variables[name] ?? `$(${name})`;
        index = close;
      } else {
        output += character;
      }
    }
    return output;
  }

  it.each(['$(HOME)', '$$(HOME)', '$', 'a$', '$$', '$$$(', 'plain', '${HOME}', '$(unterminated', 'x $(A) y $$ z'])('round-trips %j', (text) => {
    expect(kubeletExpand(escapeExpansion(text), { HOME: '/root', A: 'expanded' })).toBe(text);
  });
});

describe('roles', () => {
  it('defaults to app with priority 0', () => {
    expect(describeContainers([{ name: 'web' }], {}, OWNER)).toEqual([{ name: 'web', role: 'app', priority: 0 }]);
  });

  it('reads ECI_SIDECAR_CONTAINER', () => {
    const [entry] = describeContainers([{ name: 'log', env: [{ name: 'ECI_SIDECAR_CONTAINER', value: 'true' }] }], {}, OWNER);
    expect(entry).toEqual({ name: 'log', role: 'sidecar', priority: 1, readiness: 'started' });
  });

  it('reads ECI_CONTAINER_TYPE', () => {
    const [entry] = describeContainers([{ name: 'log', env: [{ name: 'ECI_CONTAINER_TYPE', value: 'sidecar' }] }], {}, OWNER);
    expect(entry?.role).toBe('sidecar');
  });

  it('reads the sidecars annotation', () => {
    const entries = describeContainers([{ name: 'a' }, { name: 'b' }], { 'tandem.dev/sidecars': ' b , ' }, OWNER);
    expect(entries.map((entry) => entry.role)).toEqual(['app', 'sidecar']);
  });

  it('rejects an unknown name in the sidecars annotation', () => {
    expect(() => describeContainers([{ name: 'a' }], { 'tandem.dev/sidecars': 'proxy' }, OWNER)).toThrow(/"proxy".*not a regular container/);
  });

  it('prefers KRUISE_CONTAINER_PRIORITY over ECI_CONTAINER_LAUNCH_PRIORITY', () => {
    const env = [
      { name: 'ECI_CONTAINER_LAUNCH_PRIORITY', value: '7' },
      { name: 'KRUISE_CONTAINER_PRIORITY', value: '-3' },
    ];
    expect(describeContainers([{ name: 'a', env }], {}, OWNER)[0]?.priority).toBe(-3);
  });

  it('reads ECI_CONTAINER_LAUNCH_PRIORITY', () => {
    const env = [{ name: 'ECI_CONTAINER_LAUNCH_PRIORITY', value: '5' }];
    expect(describeContainers([{ name: 'a', env }], {}, OWNER)[0]?.priority).toBe(5);
  });

  it.each(['high', '1.5', '', '99999999999999999999'])('rejects priority %j', (value) => {
    const env = [{ name: 'KRUISE_CONTAINER_PRIORITY', value }];
    let caught: unknown;
    try {
      describeContainers([{ name: 'web', env }], {}, OWNER);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(InjectError);
    const message = (caught as Error).message;
    expect(message).toContain('KRUISE_CONTAINER_PRIORITY');
    expect(message).toContain(JSON.stringify(value));
    expect(message).toContain('container web');
  });

  it('rejects a priority from valueFrom', () => {
    const env = [{ name: 'ECI_CONTAINER_LAUNCH_PRIORITY', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } }];
    expect(() => describeContainers([{ name: 'web', env }], {}, OWNER)).toThrow(/valueFrom/);
  });

  it('reads the readiness annotation of a sidecar', () => {
    const annotations = { 'tandem.dev/sidecars': 'proxy', 'readiness.tandem.dev/proxy': 'tcp:15001' };
    expect(describeContainers([{ name: 'proxy' }], annotations, OWNER)[0]?.readiness).toBe('tcp:15001');
  });

  it('rejects a readiness annotation on an app', () => {
    expect(() => describeContainers([{ name: 'web' }], { 'readiness.tandem.dev/web': 'tcp:80' }, OWNER)).toThrow(/web, which is an app/);
  });
});

describe('roles from platform markers', () => {
  it.each([
    ['KRUISE_TERMINATE_SIDECAR_WHEN_JOB_EXIT', 'true'],
    ['IS_INJECTED', 'true'],
  ])('%s=%s makes a sidecar', (name, value) => {
    const [entry] = describeContainers([{ name: 'log', env: [{ name, value }] }], {}, OWNER);
    expect(entry?.role).toBe('sidecar');
    expect(entry?.priority).toBe(1);
  });

  it('reads ECI_CONTAINER_EXIT_PRIORITY', () => {
    const [entry] = describeContainers([{ name: 'log', env: [{ name: 'ECI_CONTAINER_EXIT_PRIORITY', value: '-5' }] }], {}, OWNER);
    expect(entry?.exitPriority).toBe(-5);
  });

  it('leaves exit priority unset by default', () => {
    const [entry] = describeContainers([{ name: 'web' }], {}, OWNER);
    expect(entry).not.toHaveProperty('exitPriority');
  });

  it('rejects an invalid readiness annotation', () => {
    const containers = [{ name: 'proxy', env: [{ name: 'ECI_SIDECAR_CONTAINER', value: 'true' }] }];
    expect(() => describeContainers(containers, { 'readiness.tandem.dev/proxy': 'tcp:http' }, OWNER)).toThrow(/Invalid readiness check "tcp:http"/);
  });
});

describe('injectTandem', () => {
  const filebeat: Container = {
    name: 'filebeat',
    image: 'busybox',
    args: ['/bin/sh', '-c', 'cat /etc/filebeat.yml && sleep 36000'],
    env: [{ name: 'ECI_SIDECAR_CONTAINER', value: 'true' }],
    volumeMounts: [{ name: 'stdlog', mountPath: '/var/log/std', readOnly: true }],
  };
  const echo: Container = {
    name: 'echo-server',
    image: 'hashicorp/http-echo',
    imagePullPolicy: 'IfNotPresent',
    ports: [{ containerPort: 8080 }],
    resources: { limits: { cpu: '100m' } },
    args: ['-listen=:8080', '-text="hello world"'],
  };
  const configs = {
    filebeat: { entrypoint: [], cmd: ['sh'], source: 'test' },
    'echo-server': { entrypoint: ['/http-echo'], cmd: [], source: 'test' },
  };
  const stdlogVolume = { name: 'stdlog', csi: { driver: 'stdlogplugin.csi.alibabacloud.com' } };

  it('wraps every container with its original argv', () => {
    const result = injected(template([filebeat, echo], undefined, { volumes: [stdlogVolume] }), options(configs));
    const [sidecar, app] = result.template.spec.containers;

    expect(sidecar?.command).toEqual(supervise('filebeat', 'sidecar', 1));
    expect(sidecar?.args).toEqual(['/bin/sh', '-c', 'cat /etc/filebeat.yml && sleep 36000']);
    expect(app?.command).toEqual(supervise('echo-server', 'app', 0));
    expect(app?.args).toEqual(['/http-echo', '-listen=:8080', '-text="hello world"']);
  });

  it('keeps ports, resources and env', () => {
    const result = injected(template([filebeat, echo]), options(configs));
    const app = result.template.spec.containers[1]!;
    expect(app.ports).toEqual([{ containerPort: 8080 }]);
    expect(app.resources).toEqual({ limits: { cpu: '100m' } });
    expect(app.imagePullPolicy).toBe('IfNotPresent');
    expect(result.template.spec.containers[0]?.env).toEqual([{ name: 'ECI_SIDECAR_CONTAINER', value: 'true' }]);
  });

  it('adds the three shared volumes and mounts', () => {
    const result = injected(template([echo]), options(configs));
    expect(result.template.spec.volumes).toEqual([
      { name: 'tandem', emptyDir: {} },
      { name: 'tandem-state', emptyDir: {} },
      { name: 'tandem-logs', emptyDir: {} },
    ]);
    expect(result.template.spec.containers[0]?.volumeMounts).toEqual([
      { name: 'tandem', mountPath: '/tandem', readOnly: true },
      { name: 'tandem-state', mountPath: '/tandem/state' },
      { name: 'tandem-logs', mountPath: '/tandem/logs' },
    ]);
  });

  it('prepends a restricted tandem-init', () => {
    const existingInit = { name: 'migrate', image: 'migrate:1', command: ['/migrate'] };
    const result = injected(template([echo], undefined, { initContainers: [existingInit] }), options(configs));
    const [init, migrate] = result.template.spec.initContainers!;

    expect(migrate).toEqual(existingInit);
    expect(init?.image).toBe('localhost/tandem:test');
    expect(init?.volumeMounts).toEqual([
      { name: 'tandem', mountPath: '/tandem' },
      { name: 'tandem-state', mountPath: '/tandem/state' },
      { name: 'tandem-logs', mountPath: '/tandem/logs' },
    ]);
    expect(init?.securityContext).toEqual({
      runAsNonRoot: true,
      runAsUser: 65534,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
      readOnlyRootFilesystem: true,
    });
  });

  it('writes a pod spec the supervisor accepts', () => {
    const result = injected(template([filebeat, echo], undefined, { restartPolicy: 'OnFailure', terminationGracePeriodSeconds: 5 }), options(configs));
    const podSpec = parsePodSpec(podJsonOf(result.template), 'test');
    expect(podSpec).toEqual({
      version: 1,
      restartPolicy: 'OnFailure',
      terminationGracePeriodSeconds: 5,
      containers: [
        { name: 'filebeat', role: 'sidecar', priority: 1, readiness: 'started' },
        { name: 'echo-server', role: 'app', priority: 0 },
      ],
    });
  });

  it('defaults restartPolicy and grace period', () => {
    const podSpec = parsePodSpec(podJsonOf(injected(template([echo]), options(configs)).template), 'test');
    expect(podSpec.restartPolicy).toBe('Always');
    expect(podSpec.terminationGracePeriodSeconds).toBe(30);
  });

  it('escapes expansion in the pod JSON', () => {
    const annotations = { 'tandem.dev/sidecars': 'echo-server', 'readiness.tandem.dev/echo-server': 'exec:$(CHECK)' };
    const json = podJsonOf(injected(template([echo], annotations), options(configs)).template);
    expect(json).toContain('"readiness":"exec:$$(CHECK)"');
  });

  it('moves stdlog mounts to tandem-logs', () => {
    const result = injected(template([filebeat, echo], undefined, { volumes: [stdlogVolume, { name: 'data', emptyDir: {} }] }), options(configs));
    expect(result.removedStdlogVolumes).toEqual(['stdlog']);
    expect(result.template.spec.volumes?.map((volume) => volume.name)).toEqual(['data', 'tandem', 'tandem-state', 'tandem-logs']);
    expect(result.template.spec.containers[0]?.volumeMounts?.[0]).toEqual({ name: 'tandem-logs', mountPath: '/var/log/std', readOnly: true });
  });

  it('keeps stdlog volumes with keepStdlog', () => {
    const result = injected(template([filebeat, echo], undefined, { volumes: [stdlogVolume] }), options(configs, { keepStdlog: true }));
    expect(result.removedStdlogVolumes).toEqual([]);
    expect(result.template.spec.volumes?.[0]).toEqual(stdlogVolume);
    expect(result.template.spec.containers[0]?.volumeMounts?.[0]?.name).toBe('stdlog');
  });

  it('leaves the input unchanged', () => {
    const input = template([filebeat, echo], undefined, { volumes: [stdlogVolume] });
    const copy = structuredClone(input);
    injected(input, options(configs));
    expect(input).toEqual(copy);
  });

  it('returns an injected template unchanged', () => {
    const once = injected(template([filebeat, echo]), options(configs)).template;
    const twice = injectTandem(once, options(configs));
    expect(twice.status).toBe('already injected');
    expect(twice.template).toEqual(once);
  });

  it('honours tandem.dev/inject: disabled', () => {
    const input = template([echo], { 'tandem.dev/inject': 'disabled' });
    const result = injectTandem(input, options(configs));
    expect(result.status).toBe('disabled');
    expect(result.template).toEqual(input);
  });

  it('rejects an unknown tandem.dev/inject value', () => {
    expect(() => injectTandem(template([echo], { 'tandem.dev/inject': 'off' }), options(configs))).toThrow(/"off".*expected enabled or disabled/);
  });

  it('rejects a reserved volume name', () => {
    const input = template([echo], undefined, { volumes: [{ name: 'tandem-state', emptyDir: {} }] });
    expect(() => injectTandem(input, options(configs))).toThrow(/volume named tandem-state/);
  });

  it('rejects an init container named tandem-init', () => {
    const own = { name: 'tandem-init', image: 'busybox:1', command: ['/bin/true'] };
    const input = template([echo], undefined, { initContainers: [own] });
    expect(isTandemInjected(input)).toBe(false);
    expect(() => injectTandem(input, options(configs))).toThrow(InjectError);
    expect(() => injectTandem(input, options(configs))).toThrow(
      'Deployment/test already has a container named tandem-init in initContainers, which tandem reserves for its init container. Rename the container.',
    );
  });

  it('rejects a container named tandem-init', () => {
    const input = template([{ ...echo, name: 'tandem-init' }]);
    expect(() => injectTandem(input, options({ 'tandem-init': configs['echo-server'] }))).toThrow(
      'Deployment/test already has a container named tandem-init in containers, which tandem reserves for its init container. Rename the container.',
    );
  });

  it('rejects tandem-init that does not run tandem install', () => {
    const lookalike = { name: 'tandem-init', image: 'localhost/tandem:test', command: ['/opt/tandem/bin/tandem', 'version'] };
    const input = template([echo], undefined, { initContainers: [lookalike] });
    expect(isTandemInjected(input)).toBe(false);
    expect(() => injectTandem(input, options(configs))).toThrow(/container named tandem-init in initContainers/);
  });

  it('detects its own tandem-init as injected', () => {
    const once = injected(template([echo]), options(configs)).template;
    expect(isTandemInjected(once)).toBe(true);
  });

  it('ignores tandem-init with a string command', () => {
    const malformed = { name: 'tandem-init', image: 'x', command: '/opt/tandem/bin/tandem install' };
    expect(isTandemInjected(template([echo], undefined, { initContainers: [malformed] }))).toBe(false);
  });

  it('rejects a mount under /tandem', () => {
    const input = template([{ ...echo, volumeMounts: [{ name: 'data', mountPath: '/tandem/data' }] }], undefined, { volumes: [{ name: 'data', emptyDir: {} }] });
    expect(() => injectTandem(input, options(configs))).toThrow(/at \/tandem\/data, inside \/tandem/);
  });

  it('rejects an invalid restartPolicy', () => {
    expect(() => injectTandem(template([echo], undefined, { restartPolicy: 'Sometimes' }), options(configs))).toThrow(/restartPolicy "Sometimes"/);
  });
});

describe('init containers and sidecars', () => {
  const proxy: Container = { name: 'proxy', image: 'proxy', command: ['proxy'], env: [{ name: 'ECI_SIDECAR_CONTAINER', value: 'true' }] };
  const web: Container = { name: 'web', image: 'web', command: ['web'] };

  it('warns when an init container precedes sidecars', () => {
    const input = template([proxy, web], undefined, { initContainers: [{ name: 'migrate', image: 'tool', command: ['wget', '127.0.0.1:8080'] }] });
    const result = injectTandem(input, options());
    expect(result.status).toBe('injected');
    const warnings = result.status === 'injected' ? result.warnings : [];
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain('init containers migrate run before sidecars proxy start');
  });

  it('no warning without own init containers', () => {
    const result = injectTandem(template([proxy, web]), options());
    expect(result.status === 'injected' ? result.warnings : undefined).toEqual([]);
  });

  it('native sidecars need no warning', () => {
    const input = template([proxy, web], undefined, { initContainers: [{ name: 'mesh', image: 'mesh', command: ['mesh'], restartPolicy: 'Always' }] });
    const result = injectTandem(input, options());
    expect(result.status === 'injected' ? result.warnings : undefined).toEqual([]);
  });
});

describe('stop signal', () => {
  it('passes lifecycle.stopSignal to the supervisor', () => {
    const result = injected(template([{ name: 'nginx', image: 'nginx', command: ['nginx'], lifecycle: { stopSignal: 'SIGQUIT' } }]));
    const command = result.template.spec.containers[0]!.command!;
    expect(command.slice(command.indexOf('--stop-signal'), command.indexOf('--stop-signal') + 2)).toEqual(['--stop-signal', 'SIGQUIT']);
    expect(command.at(-1)).toBe('--');
  });

  it('adds no stop signal by default', () => {
    const result = injected(template([{ name: 'web', image: 'web', command: ['web'] }]));
    expect(result.template.spec.containers[0]!.command).not.toContain('--stop-signal');
  });
});
