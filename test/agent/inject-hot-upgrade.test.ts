import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseManifests } from '../../agent/inject/io.js';
import type { Container, KubeObject, PodTemplateSpec } from '../../agent/inject/k8s.js';
import { applySidecarSets } from '../../agent/inject/sidecarset/apply.js';
import { sidecarSetHash } from '../../agent/inject/sidecarset/hash.js';
import { loadSidecarSets } from '../../agent/inject/sidecarset/load.js';
import type { SidecarSet } from '../../agent/inject/sidecarset/types.js';
import { parsePodSpec } from '../../supervisor/protocol/pod.js';

// Expected names and values follow Kruise's pkg/control/sidecarcontrol/util_hotupgrade.go and
// pkg/webhook/pod/mutating/sidecarset_hotupgrade.go.

const OWNER = 'Deployment/web';
const NOW = new Date('2025-04-29T03:26:06Z');
const CLI = path.resolve('dist/agent/cli.js');

const app: Container = { name: 'app', image: 'app:1', command: ['/app'], volumeMounts: [{ name: 'data', mountPath: '/data' }] };

const mesh = {
  name: 'mesh',
  image: 'mesh:2',
  command: ['/mesh', '--listen=:15001'],
  env: [{ name: 'MODE', value: 'proxy' }],
  volumeMounts: [{ name: 'mesh-config', mountPath: '/etc/mesh' }],
  lifecycle: { postStart: { exec: { command: ['/migrate.sh'] } } },
  upgradeStrategy: { upgradeType: 'HotUpgrade', hotUpgradeEmptyImage: 'mesh-empty:1' },
};
const logger = { name: 'logger', image: 'logger:1', command: ['/logger'], podInjectPolicy: 'AfterAppContainer' };

function sidecarSetDocument(containers: unknown[], name = 'mesh-set'): KubeObject {
  return {
    apiVersion: 'apps.kruise.io/v1alpha1',
    kind: 'SidecarSet',
    metadata: { name },
    spec: {
      selector: { matchLabels: { app: 'web' } },
      containers,
      volumes: [{ name: 'mesh-config', configMap: { name: 'mesh' } }],
    },
  };
}

function load(document: KubeObject): SidecarSet {
  return loadSidecarSets([document], 'mesh.yaml')[0]!.sidecarSet;
}

function pod(annotations?: Record<string, string>): PodTemplateSpec {
  return { metadata: { labels: { app: 'web' }, ...(annotations ? { annotations } : {}) }, spec: { containers: [app] } };
}

function apply(template: PodTemplateSpec, sets: SidecarSet[], warnings: string[] = []) {
  return applySidecarSets(template, sets, NOW, OWNER, warnings);
}

function container(template: PodTemplateSpec, name: string): Container {
  const found = template.spec.containers.find((candidate) => candidate.name === name);
  expect(found, `container ${name}`).toBeDefined();
  return found!;
}

function versionEnv(slot: string) {
  return [
    { name: 'SIDECARSET_VERSION', valueFrom: { fieldRef: { fieldPath: `metadata.annotations['version.sidecarset.kruise.io/${slot}']` } } },
    { name: 'SIDECARSET_VERSION_ALT', valueFrom: { fieldRef: { fieldPath: `metadata.annotations['versionalt.sidecarset.kruise.io/${slot}']` } } },
  ];
}

describe('SidecarSet hot upgrade', () => {
  const set = load(sidecarSetDocument([mesh, logger]));
  const { template, report } = apply(pod(), [set]);
  const annotations = template.metadata!.annotations!;

  it('injects two slots in place of the container', () => {
    expect(template.spec.containers.map((entry) => entry.name)).toEqual(['mesh-1', 'mesh-2', 'app', 'logger']);
    expect(report.containers).toEqual(['mesh-1', 'mesh-2', 'logger']);
  });

  it('sets each slot image', () => {
    expect(container(template, 'mesh-1').image).toBe('mesh:2');
    expect(container(template, 'mesh-2').image).toBe('mesh-empty:1');
  });

  it('appends the version env after IS_INJECTED', () => {
    for (const slot of ['mesh-1', 'mesh-2']) {
      expect(container(template, slot).env).toEqual([{ name: 'MODE', value: 'proxy' }, { name: 'IS_INJECTED', value: 'true' }, ...versionEnv(slot)]);
    }
  });

  it('keeps mounts, command and hook on both slots', () => {
    for (const slot of ['mesh-1', 'mesh-2']) {
      const injected = container(template, slot);
      expect(injected.volumeMounts).toEqual([{ name: 'mesh-config', mountPath: '/etc/mesh' }]);
      expect(injected.command).toEqual(['/mesh', '--listen=:15001']);
      expect(injected.lifecycle).toEqual({ postStart: { exec: { command: ['/migrate.sh'] } } });
      expect(injected).not.toHaveProperty('upgradeStrategy');
    }
  });

  it('adds the SidecarSet volume once', () => {
    expect(template.spec.volumes).toEqual([{ name: 'mesh-config', configMap: { name: 'mesh' } }]);
    expect(report.volumes).toEqual(['mesh-config']);
  });

  it('writes the version annotations', () => {
    expect(annotations['version.sidecarset.kruise.io/mesh-1']).toBe('1');
    expect(annotations['versionalt.sidecarset.kruise.io/mesh-1']).toBe('0');
    expect(annotations['version.sidecarset.kruise.io/mesh-2']).toBe('0');
    expect(annotations['versionalt.sidecarset.kruise.io/mesh-2']).toBe('1');
  });

  it('records slot 1 as the working slot', () => {
    expect(annotations['kruise.io/sidecarset-working-hotupgrade-container']).toBe('{"mesh":"mesh-1"}');
  });

  it('lists the SidecarSet container in the hash', () => {
    const hashes = JSON.parse(annotations['kruise.io/sidecarset-hash']!) as Record<string, { hash: string; sidecarList: string[] }>;
    expect(hashes['mesh-set']!.sidecarList).toEqual(['logger', 'mesh']);
    expect(hashes['mesh-set']!.hash).toBe(sidecarSetHash(set));
    expect(annotations['kruise.io/sidecarset-injected-list']).toBe('mesh-set');
  });

  it('leaves the cold-upgrade container as before', () => {
    const cold = load(sidecarSetDocument([logger], 'log-set'));
    const alone = apply(pod(), [cold]).template;
    expect(container(template, 'logger')).toEqual(container(alone, 'logger'));
    expect(alone.metadata!.annotations).not.toHaveProperty('kruise.io/sidecarset-working-hotupgrade-container');
  });

  it('is idempotent', () => {
    const again = apply(template, [set]);
    expect(again.template).toEqual(template);
    expect(again.report.replaced).toEqual(['mesh-1', 'mesh-2', 'logger']);
  });

  it('keeps working slots of other sidecars', () => {
    const existing = { 'kruise.io/sidecarset-working-hotupgrade-container': '{"envoy":"envoy-2"}' };
    const merged = apply(pod(existing), [set]).template.metadata!.annotations!;
    expect(merged['kruise.io/sidecarset-working-hotupgrade-container']).toBe('{"envoy":"envoy-2","mesh":"mesh-1"}');
  });

  it('replaces an invalid working-slot annotation', () => {
    const warnings: string[] = [];
    const existing = { 'kruise.io/sidecarset-working-hotupgrade-container': 'not json' };
    const replaced = apply(pod(existing), [set], warnings).template.metadata!.annotations!;
    expect(replaced['kruise.io/sidecarset-working-hotupgrade-container']).toBe('{"mesh":"mesh-1"}');
    expect(warnings).toEqual([`${OWNER}: annotation kruise.io/sidecarset-working-hotupgrade-container is not a JSON object of strings, so it was replaced`]);
  });

  it('records every hot-upgrade container', () => {
    const second = { ...mesh, name: 'envoy', podInjectPolicy: 'AfterAppContainer', upgradeStrategy: { upgradeType: 'HotUpgrade', hotUpgradeEmptyImage: 'envoy-empty:1' } };
    const both = apply(pod(), [load(sidecarSetDocument([mesh, second]))]).template;
    expect(both.spec.containers.map((entry) => entry.name)).toEqual(['mesh-1', 'mesh-2', 'app', 'envoy-1', 'envoy-2']);
    expect(both.metadata!.annotations!['kruise.io/sidecarset-working-hotupgrade-container']).toBe('{"envoy":"envoy-1","mesh":"mesh-1"}');
  });

  it('rejects a missing empty image', () => {
    const withoutEmpty = { ...mesh, upgradeStrategy: { upgradeType: 'HotUpgrade' } };
    expect(() => load(sidecarSetDocument([withoutEmpty]))).toThrow(
      'Invalid SidecarSet mesh-set in mesh.yaml: spec.containers[0] (mesh): upgradeStrategy HotUpgrade requires upgradeStrategy.hotUpgradeEmptyImage',
    );
  });

  it('rejects an empty empty image', () => {
    const blank = { ...mesh, upgradeStrategy: { upgradeType: 'HotUpgrade', hotUpgradeEmptyImage: '' } };
    expect(() => load(sidecarSetDocument([blank]))).toThrow(/spec\.containers\[0\] \(mesh\): upgradeStrategy HotUpgrade requires upgradeStrategy\.hotUpgradeEmptyImage/);
  });

  it('rejects hot upgrade on init containers', () => {
    const document = sidecarSetDocument([logger]);
    (document.spec as Record<string, unknown>).initContainers = [{ ...mesh, name: 'mesh-init', restartPolicy: 'Always' }];
    expect(() => load(document)).toThrow(/spec\.initContainers\[0\] \(mesh-init\): tandem inject supports upgradeStrategy HotUpgrade on spec\.containers only/);
  });
});

describe('tandem inject CLI with hot upgrade', () => {
  let directory: string;

  beforeAll(() => {
    if (!existsSync(CLI)) {
      throw new Error(`${CLI} is missing. Run \`npm run build\` first.`);
    }
    directory = mkdtempSync(path.join(tmpdir(), 'tandem-hot-upgrade-'));
  });

  afterAll(() => {
    rmSync(directory, { recursive: true, force: true });
  });

  function runCli(sidecarSetFile: string, input: string) {
    return spawnSync(process.execPath, [CLI, 'inject', '--no-registry', '--sidecarset', sidecarSetFile, '-'], {
      input,
      encoding: 'utf8',
      env: { ...process.env, SOURCE_DATE_EPOCH: String(NOW.getTime() / 1000) },
      timeout: 60_000,
    });
  }

  const deployment = {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'web' },
    spec: { selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'web' } }, spec: { containers: [app] } } },
  };

  it('wraps both slots as sidecars', () => {
    const file = path.join(directory, 'mesh.yaml');
    writeFileSync(file, stringify(sidecarSetDocument([mesh])));
    const result = runCli(file, JSON.stringify(deployment));
    expect(result.stderr).not.toContain('rror');
    expect(result.status).toBe(0);
    expect(result.stderr).toContain('Deployment/web: applied SidecarSet mesh-set: added containers mesh-1, mesh-2');

    const [output] = parseManifests(result.stdout, 'CLI output') as KubeObject[];
    const template = (output!.spec as { template: PodTemplateSpec }).template;
    expect(template.spec.containers.map((entry) => entry.name)).toEqual(['mesh-1', 'mesh-2', 'app']);
    expect(container(template, 'mesh-1').image).toBe('mesh:2');
    expect(container(template, 'mesh-2').image).toBe('mesh-empty:1');
    expect(template.metadata!.annotations!['kruise.io/sidecarset-working-hotupgrade-container']).toBe('{"mesh":"mesh-1"}');
    expect(template.metadata!.annotations!['version.sidecarset.kruise.io/mesh-2']).toBe('0');

    const init = template.spec.initContainers?.[0];
    expect(init?.name).toBe('tandem-init');
    const podSpec = parsePodSpec(init!.command![4]!, 'tandem-init');
    expect(podSpec.containers.map(({ name, role }) => ({ name, role }))).toEqual([
      { name: 'mesh-1', role: 'sidecar' },
      { name: 'mesh-2', role: 'sidecar' },
      { name: 'app', role: 'app' },
    ]);

    const again = runCli(file, result.stdout);
    expect(again.status).toBe(0);
    expect(again.stdout).toBe(result.stdout);
  });

  it('gives the empty slot the sidecar image entrypoint', () => {
    const file = path.join(directory, 'args-only.yaml');
    const argsOnly = { ...mesh, command: undefined, args: ['--port', '8080'] };
    writeFileSync(file, stringify(sidecarSetDocument([argsOnly])));
    const annotated = structuredClone(deployment) as typeof deployment & { spec: { template: { metadata: { annotations?: Record<string, string> } } } };
    // The ENTRYPOINT of mesh:2, as the annotation resolver reads it for the working slot.
    annotated.spec.template.metadata.annotations = { 'entrypoint.tandem.dev/mesh-1': '["/mesh"]' };
    const result = runCli(file, JSON.stringify(annotated));
    expect(result.stderr).not.toContain('rror');
    expect(result.status).toBe(0);

    const [output] = parseManifests(result.stdout, 'CLI output') as KubeObject[];
    const template = (output!.spec as { template: PodTemplateSpec }).template;
    const argv = (name: string) => {
      const words = [...container(template, name).command!, ...(container(template, name).args ?? [])];
      return words.slice(words.indexOf('--') + 1);
    };
    expect(argv('mesh-1')).toEqual(['/mesh', '--port', '8080']);
    expect(argv('mesh-2')).toEqual(['/mesh', '--port', '8080']);
  });

  it('reports a missing empty image', () => {
    const file = path.join(directory, 'no-empty.yaml');
    writeFileSync(file, stringify(sidecarSetDocument([{ ...mesh, upgradeStrategy: { upgradeType: 'HotUpgrade' } }])));
    const result = runCli(file, JSON.stringify(deployment));
    expect(result.status).not.toBe(0);
    expect(result.stderr).toContain('spec.containers[0] (mesh): upgradeStrategy HotUpgrade requires upgradeStrategy.hotUpgradeEmptyImage');
  });
});
