import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseManifests } from '../../agent/inject/io.js';
import type { Container, PodTemplateSpec } from '../../agent/inject/k8s.js';
import { applySidecarSets } from '../../agent/inject/sidecarset/apply.js';
import { encodeSidecarContainers } from '../../agent/inject/sidecarset/go-json.js';
import { hashSidecarContainers, sidecarSetHash, sidecarSetHashWithoutImage } from '../../agent/inject/sidecarset/hash.js';
import { loadSidecarSets } from '../../agent/inject/sidecarset/load.js';
import { sidecarSetMatchesPod } from '../../agent/inject/sidecarset/match.js';
import { matchesLabelSelector } from '../../agent/inject/sidecarset/selector.js';
import type { SidecarSet } from '../../agent/inject/sidecarset/types.js';

const OWNER = 'Deployment/test';
const NOW = new Date('2025-04-29T03:26:06.783Z');
const REFERENCE_SIDECARSET = 'examples/reference/sidecarset.yaml';

function referenceSidecarSet(): SidecarSet {
  const [loaded] = loadSidecarSets(parseManifests(readFileSync(REFERENCE_SIDECARSET, 'utf8'), REFERENCE_SIDECARSET), REFERENCE_SIDECARSET);
  return loaded!.sidecarSet;
}

function sidecarSet(name: string, spec: Partial<SidecarSet['spec']>): SidecarSet {
  const loaded = loadSidecarSets(
    [{ apiVersion: 'apps.kruise.io/v1alpha1', kind: 'SidecarSet', metadata: { name }, spec: { selector: { matchLabels: { app: 'web' } }, ...spec } }],
    'test.yaml',
  );
  return loaded[0]!.sidecarSet;
}

function pod(containers: Container[], extra: Record<string, unknown> = {}, annotations?: Record<string, string>): PodTemplateSpec {
  return { metadata: { labels: { app: 'web' }, ...(annotations ? { annotations } : {}) }, spec: { containers, ...extra } };
}

function apply(template: PodTemplateSpec, sets: SidecarSet[], warnings: string[] = []) {
  return applySidecarSets(template, sets, NOW, OWNER, warnings);
}

const app: Container = { name: 'app', image: 'app:1', command: ['/app'] };

describe('Kruise SidecarSet hash', () => {
  // Expected values from Kruise pkg/control/sidecarcontrol/hash_test.go.
  const container = { name: 'container1', image: 'test-image' };

  it('matches Kruise for containers', () => {
    expect(hashSidecarContainers([container], [])).toBe('w26c4x8fz245642fdv499b464248f974xddx4x55z5dw55bc6x66464fxz77dc78');
  });

  it('ignores plain init containers', () => {
    expect(hashSidecarContainers([container], [container])).toBe('w26c4x8fz245642fdv499b464248f974xddx4x55z5dw55bc6x66464fxz77dc78');
  });

  it('includes native sidecar init containers', () => {
    expect(hashSidecarContainers([container], [{ ...container, restartPolicy: 'Always' }])).toBe(
      '4xwx4d4844vd4v9x79wb4xbxf4xb29475cc4446v8cz2c2f2f5c5bw448vd42z8w',
    );
  });

  it('matches Kruise without images', () => {
    const withoutImage = { name: 'container1', image: '' };
    expect(hashSidecarContainers([withoutImage], [withoutImage])).toBe('8wzddb4dvv9c6x8zdc77z4z75987424f457dfv6724ddw6zbdx467wz5x24fc759');
    expect(hashSidecarContainers([withoutImage], [{ ...withoutImage, restartPolicy: 'Always' }])).toBe(
      '5725fw8bwbx249bw57v5892c847dzf48bww9zb7c86xb95264fdz26654847b2c8',
    );
  });

  it('encodes fields in Go order', () => {
    const encoded = encodeSidecarContainers([
      {
        tty: false,
        volumeMounts: [{ mountPath: '/m', readOnly: true, name: 'v' }],
        env: [{ value: 'a<b', name: 'E' }],
        image: 'i',
        name: 'n',
        ports: [{ containerPort: 80 }],
        resources: { requests: { memory: '1Gi', cpu: '1' } },
        securityContext: { privileged: false },
        unknownField: 'dropped',
      },
    ]);
    expect(encoded).toBe(
      '[{"name":"n","image":"i","ports":[{"containerPort":80}],"env":[{"name":"E","value":"a\\u003cb"}],' +
        '"resources":{"requests":{"cpu":"1","memory":"1Gi"}},"volumeMounts":[{"name":"v","readOnly":true,"mountPath":"/m"}],' +
        '"securityContext":{"privileged":false},"upgradeStrategy":{},"shareVolumePolicy":{}}]',
    );
  });

  it('changes with the image only in the full hash', () => {
    const set = referenceSidecarSet();
    const changed = structuredClone(set);
    changed.spec.containers![0]!.image = 'busybox:1.36';
    expect(sidecarSetHash(changed)).not.toBe(sidecarSetHash(set));
    expect(sidecarSetHashWithoutImage(changed)).toBe(sidecarSetHashWithoutImage(set));
  });
});

describe('label selectors', () => {
  const labels = { app: 'web', tier: 'front' };

  it.each([
    [{ matchLabels: { app: 'web' } }, true],
    [{ matchLabels: { app: 'db' } }, false],
    [{ matchExpressions: [{ key: 'tier', operator: 'In', values: ['front', 'back'] }] }, true],
    [{ matchExpressions: [{ key: 'tier', operator: 'In', values: ['back'] }] }, false],
    [{ matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['back'] }] }, true],
    [{ matchExpressions: [{ key: 'zone', operator: 'NotIn', values: ['a'] }] }, true],
    [{ matchExpressions: [{ key: 'tier', operator: 'Exists' }] }, true],
    [{ matchExpressions: [{ key: 'zone', operator: 'Exists' }] }, false],
    [{ matchExpressions: [{ key: 'zone', operator: 'DoesNotExist' }] }, true],
    [{ matchLabels: { app: 'web' }, matchExpressions: [{ key: 'tier', operator: 'DoesNotExist' }] }, false],
  ])('matches %j: %s', (selector, expected) => {
    expect(matchesLabelSelector(selector, labels)).toBe(expected);
  });

  it('rejects an empty selector', () => {
    expect(() => sidecarSet('s', { selector: {}, containers: [app] })).toThrow(/selector is empty/);
  });

  it('rejects an unknown operator', () => {
    expect(() => sidecarSet('s', { selector: { matchExpressions: [{ key: 'a', operator: 'Equals', values: ['b'] }] }, containers: [app] })).toThrow(
      /operator "Equals"/,
    );
  });
});

describe('SidecarSet matching', () => {
  const identity = { namespace: 'default', labels: { app: 'web' }, owner: OWNER };

  it('matches by selector', () => {
    expect(sidecarSetMatchesPod(sidecarSet('s', { containers: [app] }), identity, new Map())).toBe(true);
    expect(sidecarSetMatchesPod(sidecarSet('s', { containers: [app] }), { ...identity, labels: { app: 'db' } }, new Map())).toBe(false);
  });

  it('honours spec.namespace', () => {
    const set = sidecarSet('s', { namespace: 'prod', containers: [app] });
    expect(sidecarSetMatchesPod(set, identity, new Map())).toBe(false);
    expect(sidecarSetMatchesPod(set, { ...identity, namespace: 'prod' }, new Map())).toBe(true);
  });

  it('skips a paused SidecarSet', () => {
    const set = sidecarSet('s', { injectionStrategy: { paused: true }, containers: [app] });
    expect(sidecarSetMatchesPod(set, identity, new Map())).toBe(false);
  });

  it('selects namespaces by their name label', () => {
    const set = sidecarSet('s', { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'prod' } }, containers: [app] });
    expect(sidecarSetMatchesPod(set, { ...identity, namespace: 'prod' }, new Map())).toBe(true);
    expect(sidecarSetMatchesPod(set, identity, new Map())).toBe(false);
  });

  it('selects namespaces by labels from Namespace objects', () => {
    const set = sidecarSet('s', { namespaceSelector: { matchLabels: { mesh: 'on' } }, containers: [app] });
    const labels = new Map([['prod', { mesh: 'on' }]]);
    expect(sidecarSetMatchesPod(set, { ...identity, namespace: 'prod' }, labels)).toBe(true);
    expect(sidecarSetMatchesPod(set, { ...identity, namespace: 'prod' }, new Map([['prod', {}]]))).toBe(false);
  });

  it('rejects namespace labels it cannot know', () => {
    const set = sidecarSet('s', { namespaceSelector: { matchLabels: { mesh: 'on' } }, containers: [app] });
    expect(() => sidecarSetMatchesPod(set, identity, new Map())).toThrow(/label mesh.*Add the Namespace object/);
  });

  it('accepts a namespaces list', () => {
    const set = sidecarSet('s', { namespaceSelector: { namespaces: ['a', 'b'] }, containers: [app] });
    expect(sidecarSetMatchesPod(set, { ...identity, namespace: 'b' }, new Map())).toBe(true);
    expect(sidecarSetMatchesPod(set, identity, new Map())).toBe(false);
  });
});

describe('SidecarSet loading', () => {
  it('loads the reference SidecarSet', () => {
    const set = referenceSidecarSet();
    expect(set.metadata.name).toBe('filebeat-sidecarset');
    expect(set.spec.containers?.map((container) => container.name)).toEqual(['filebeat']);
  });

  it('rejects a mount of an undefined volume', () => {
    const container = { ...app, volumeMounts: [{ name: 'missing', mountPath: '/m' }] };
    expect(() => sidecarSet('s', { containers: [container] })).toThrow(/volumeMount missing refers to a volume that spec.volumes does not define/);
  });

  it('rejects an unknown shareVolumePolicy', () => {
    expect(() => sidecarSet('s', { containers: [{ ...app, shareVolumePolicy: { type: 'Enabled' } }] })).toThrow(/"Enabled", expected enabled or disabled/);
  });

  it('rejects hot upgrade without an empty image', () => {
    expect(() => sidecarSet('s', { containers: [{ ...app, upgradeStrategy: { upgradeType: 'HotUpgrade' } }] })).toThrow(/requires upgradeStrategy.hotUpgradeEmptyImage/);
  });

  it('rejects a file without SidecarSets', () => {
    expect(() => loadSidecarSets([{ apiVersion: 'v1', kind: 'ConfigMap' }], 'cm.yaml')).toThrow(/cm.yaml contains no SidecarSet/);
  });
});

describe('applySidecarSets', () => {
  it('injects the reference filebeat sidecar', () => {
    const set = referenceSidecarSet();
    const echo = { name: 'echo-server', image: 'hashicorp/http-echo', args: ['-listen=:8080'] };
    const { template, report } = apply(pod([echo]), [set]);

    expect(template.spec.containers.map((container) => container.name)).toEqual(['filebeat', 'echo-server']);
    const filebeat = template.spec.containers[0]!;
    expect(filebeat.env).toEqual([
      { name: 'ECI_SIDECAR_CONTAINER', value: 'true' },
      { name: 'IS_INJECTED', value: 'true' },
    ]);
    expect(filebeat.args).toEqual(['/bin/sh', '-c', 'cat /etc/filebeat.yml && sleep 36000']);
    expect(template.spec.volumes).toEqual([
      { name: 'config', configMap: { name: 'kube-system/filebeat-config' } },
      { name: 'stdlog', csi: { driver: 'stdlogplugin.csi.alibabacloud.com' } },
    ]);
    expect(report).toEqual({ applied: ['filebeat-sidecarset'], containers: ['filebeat'], initContainers: [], replaced: [], volumes: ['config', 'stdlog'] });
  });

  it('writes Kruise annotations', () => {
    const set = referenceSidecarSet();
    const annotations = apply(pod([app]), [set]).template.metadata!.annotations!;
    const hash = sidecarSetHash(set);

    expect(annotations['kruise.io/sidecarset-hash']).toBe(
      `{"filebeat-sidecarset":{"updateTimestamp":"2025-04-29T03:26:06Z","hash":"${hash}","sidecarSetName":"filebeat-sidecarset","sidecarList":["filebeat"]}}`,
    );
    expect(JSON.parse(annotations['kruise.io/sidecarset-hash-without-image']!)).toEqual({
      'filebeat-sidecarset': {
        updateTimestamp: '2025-04-29T03:26:06Z',
        hash: sidecarSetHashWithoutImage(set),
        sidecarSetName: 'filebeat-sidecarset',
        sidecarList: ['filebeat'],
      },
    });
    expect(annotations['kruise.io/sidecarset-injected-list']).toBe('filebeat-sidecarset');
  });

  it('keeps other SidecarSets in the annotations', () => {
    const existing = {
      'kruise.io/sidecarset-hash': '{"zeta":"oldhash"}',
      'kruise.io/sidecarset-injected-list': 'zeta',
      team: 'a',
    };
    const set = sidecarSet('alpha', { containers: [{ name: 'proxy', image: 'proxy:1' }] });
    const annotations = apply(pod([app], {}, existing), [set]).template.metadata!.annotations!;
    const hashes = JSON.parse(annotations['kruise.io/sidecarset-hash']!) as Record<string, unknown>;

    expect(Object.keys(hashes)).toEqual(['alpha', 'zeta']);
    expect(hashes.zeta).toEqual({ updateTimestamp: null, hash: 'oldhash', sidecarSetName: 'zeta', sidecarList: null });
    expect(annotations['kruise.io/sidecarset-injected-list']).toBe('alpha,zeta');
    expect(annotations.team).toBe('a');
  });

  it('writes controllerRevision from status', () => {
    const set = { ...sidecarSet('s', { containers: [{ name: 'proxy', image: 'proxy:1' }] }), status: { latestRevision: 's-abc' } };
    const hashes = JSON.parse(apply(pod([app]), [set]).template.metadata!.annotations!['kruise.io/sidecarset-hash']!) as Record<string, { controllerRevision?: string }>;
    expect(hashes.s?.controllerRevision).toBe('s-abc');
  });

  it('places containers by podInjectPolicy', () => {
    const set = sidecarSet('s', {
      containers: [
        { name: 'before', image: 'b:1' },
        { name: 'after', image: 'a:1', podInjectPolicy: 'AfterAppContainer' },
      ],
    });
    const names = apply(pod([app, { name: 'app2', image: 'app:2' }]), [set]).template.spec.containers.map((container) => container.name);
    expect(names).toEqual(['before', 'app', 'app2', 'after']);
  });

  it('appends init containers sorted by name', () => {
    const set = sidecarSet('s', {
      initContainers: [
        { name: 'zz-init', image: 'z:1' },
        { name: 'aa-init', image: 'a:1' },
      ],
    });
    const existing = { name: 'own', image: 'own:1' };
    const { template, report } = apply(pod([app], { initContainers: [existing] }), [set]);
    expect(template.spec.initContainers?.map((container) => container.name)).toEqual(['own', 'aa-init', 'zz-init']);
    expect(report.initContainers).toEqual(['aa-init', 'zz-init']);
  });

  it('puts a new initContainers field before containers', () => {
    const set = sidecarSet('s', { initContainers: [{ name: 'setup', image: 's:1' }] });
    const { template } = apply(pod([app], { restartPolicy: 'Never' }), [set]);
    expect(Object.keys(template.spec)).toEqual(['initContainers', 'containers', 'restartPolicy']);
  });

  it('replaces a container of the same name in place', () => {
    const set = sidecarSet('s', { containers: [{ name: 'proxy', image: 'proxy:2' }] });
    const oldProxy = { name: 'proxy', image: 'proxy:1', env: [{ name: 'IS_INJECTED', value: 'true' }] };
    const { template, report } = apply(pod([app, oldProxy]), [set]);
    expect(template.spec.containers.map((container) => `${container.name}=${container.image}`)).toEqual(['app=app:1', 'proxy=proxy:2']);
    expect(report.replaced).toEqual(['proxy']);
  });

  it('lets a pod volume of the same name win', () => {
    const set = sidecarSet('s', {
      containers: [{ name: 'proxy', image: 'p:1', volumeMounts: [{ name: 'config', mountPath: '/etc/proxy' }] }],
      volumes: [{ name: 'config', configMap: { name: 'sidecar-config' } }],
    });
    const podVolume = { name: 'config', configMap: { name: 'pod-config' } };
    const { template, report } = apply(pod([app], { volumes: [podVolume] }), [set]);
    expect(template.spec.volumes).toEqual([podVolume]);
    expect(report.volumes).toEqual([]);
  });

  it('injects only the volumes the sidecars mount', () => {
    const set = sidecarSet('s', {
      containers: [{ name: 'proxy', image: 'p:1', volumeMounts: [{ name: 'used', mountPath: '/u' }] }],
      volumes: [
        { name: 'used', emptyDir: {} },
        { name: 'unused', emptyDir: {} },
      ],
    });
    expect(apply(pod([app]), [set]).template.spec.volumes).toEqual([{ name: 'used', emptyDir: {} }]);
  });

  it('transfers env from the source container', () => {
    const source = {
      ...app,
      env: [
        { name: 'REGION', value: 'eu' },
        { name: 'ZONE', value: 'a' },
        { name: 'TOKEN', valueFrom: { secretKeyRef: { name: 's', key: 'k' } } },
      ],
    };
    const set = sidecarSet('s', {
      containers: [
        {
          name: 'proxy',
          image: 'p:1',
          env: [{ name: 'ZONE', value: 'own' }],
          transferEnv: [{ sourceContainerName: 'app', envName: 'ZONE' }, { sourceContainerName: 'app', envNames: ['TOKEN', 'REGION', 'MISSING'] }],
        },
      ],
    });
    const proxy = apply(pod([source]), [set]).template.spec.containers[0]!;
    expect(proxy.env).toEqual([
      { name: 'ZONE', value: 'own' },
      { name: 'IS_INJECTED', value: 'true' },
      { name: 'REGION', value: 'eu' },
      { name: 'TOKEN', valueFrom: { secretKeyRef: { name: 's', key: 'k' } } },
    ]);
    expect(proxy).not.toHaveProperty('transferEnv');
  });

  it('reads the transferEnv source from an annotation', () => {
    const source = { ...app, env: [{ name: 'REGION', value: 'eu' }] };
    const set = sidecarSet('s', {
      containers: [
        {
          name: 'proxy',
          image: 'p:1',
          transferEnv: [{ sourceContainerNameFrom: { fieldRef: { fieldPath: "metadata.annotations['main-container']" } }, envName: 'REGION' }],
        },
      ],
    });
    const proxy = apply(pod([source], {}, { 'main-container': 'app' }), [set]).template.spec.containers[0]!;
    expect(proxy.env).toContainEqual({ name: 'REGION', value: 'eu' });
  });

  it('shares app volume mounts when enabled', () => {
    const web = {
      ...app,
      env: [{ name: 'POD', value: 'p' }],
      volumeMounts: [
        { name: 'data', mountPath: '/data', subPathExpr: 'logs/$(POD)' },
        { name: 'cache', mountPath: '/etc/proxy' },
      ],
    };
    const injectedBefore = { name: 'old-sidecar', image: 'o:1', env: [{ name: 'IS_INJECTED', value: 'true' }], volumeMounts: [{ name: 'x', mountPath: '/x' }] };
    const set = sidecarSet('s', {
      containers: [
        {
          name: 'proxy',
          image: 'p:1',
          shareVolumePolicy: { type: 'enabled' },
          volumeMounts: [{ name: 'own', mountPath: '/etc/proxy' }],
        },
      ],
      volumes: [{ name: 'own', emptyDir: {} }],
    });
    const proxy = apply(pod([web, injectedBefore]), [set]).template.spec.containers[0]!;
    expect(proxy.volumeMounts).toEqual([
      { name: 'own', mountPath: '/etc/proxy' },
      { name: 'data', mountPath: '/data', subPathExpr: 'logs/$(POD)' },
    ]);
    expect(proxy.env).toEqual([
      { name: 'IS_INJECTED', value: 'true' },
      { name: 'POD', value: 'p' },
    ]);
  });

  it('applies patchPodMetadata policies', () => {
    const set = sidecarSet('s', {
      containers: [{ name: 'proxy', image: 'p:1' }],
      patchPodMetadata: [
        { annotations: { retained: 'sidecar', added: 'sidecar' } },
        { annotations: { overwritten: 'sidecar' }, patchPolicy: 'Overwrite' },
        { annotations: { merged: '{"proxy":2}' }, patchPolicy: 'MergePatchJson' },
      ],
    });
    const annotations = apply(pod([app], {}, { retained: 'pod', overwritten: 'pod', merged: '{"log":1,"proxy":1}' }), [set]).template.metadata!.annotations!;
    expect(annotations.retained).toBe('pod');
    expect(annotations.added).toBe('sidecar');
    expect(annotations.overwritten).toBe('sidecar');
    expect(annotations.merged).toBe('{"log":1,"proxy":2}');
  });

  it('merges image pull secrets', () => {
    const set = sidecarSet('s', { containers: [{ name: 'proxy', image: 'p:1' }], imagePullSecrets: [{ name: 'shared' }, { name: 'sidecar' }] });
    const { template } = apply(pod([app], { imagePullSecrets: [{ name: 'shared' }] }), [set]);
    expect(template.spec.imagePullSecrets).toEqual([{ name: 'shared' }, { name: 'sidecar' }]);
  });

  it('rejects two SidecarSets injecting one name', () => {
    const first = sidecarSet('first', { containers: [{ name: 'proxy', image: 'p:1' }] });
    const second = sidecarSet('second', { containers: [{ name: 'proxy', image: 'p:2' }] });
    expect(() => apply(pod([app]), [first, second])).toThrow(/first and second both match.*container proxy/);
  });

  it('returns the input when nothing matches', () => {
    const input = pod([app]);
    expect(apply(input, []).template).toBe(input);
  });

  it('leaves the input unchanged', () => {
    const input = pod([app]);
    const copy = structuredClone(input);
    apply(input, [referenceSidecarSet()]);
    expect(input).toEqual(copy);
  });
});
