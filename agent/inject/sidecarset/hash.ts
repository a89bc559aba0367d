import { createHash } from 'node:crypto';
import { withKruiseDefaults } from './defaults.js';
import { encodeSidecarContainers } from './go-json.js';
import type { SidecarContainer, SidecarSet } from './types.js';

/** SidecarSet and pod annotation that hold the SidecarSet hash. */
export const HASH_ANNOTATION = 'kruise.io/sidecarset-hash';
/** The same hash computed with every image left out. */
export const HASH_WITHOUT_IMAGE_ANNOTATION = 'kruise.io/sidecarset-hash-without-image';

// k8s.io/apimachinery rand.SafeEncodeString: maps each character to one of these, which avoids
// vowels and look-alike characters so the result never spells words.
const SAFE_ALPHABET = 'bcdfghjklmnpqrstvwxz2456789';

function safeEncode(text: string): string {
  return [...text].map((character) => SAFE_ALPHABET[character.codePointAt(0)! % SAFE_ALPHABET.length]).join('');
}

/** Returns whether an init container is a native sidecar: `restartPolicy: Always` (Kubernetes 1.28 and later). */
export function isNativeSidecar(container: { restartPolicy?: string }): boolean {
  return container.restartPolicy === 'Always';
}

/**
 * Hashes SidecarSet containers as Kruise's SidecarSetHash does, with no defaults applied: the Go
 * JSON of {"containers": [...]}, plus "initContainers" when one of them is a native sidecar,
 * hashed with SHA-256 and safe-encoded.
 */
export function hashSidecarContainers(containers: SidecarContainer[], initContainers: SidecarContainer[]): string {
  const initPart = initContainers.some(isNativeSidecar) ? `,"initContainers":${encodeSidecarContainers(initContainers)}` : '';
  const json = `{"containers":${encodeSidecarContainers(containers)}${initPart}}`;
  return safeEncode(createHash('sha256').update(json).digest('hex'));
}

function defaultedContainers(sidecarSet: SidecarSet): { containers: SidecarContainer[]; initContainers: SidecarContainer[] } {
  return {
    containers: (sidecarSet.spec.containers ?? []).map((container) => withKruiseDefaults(container, 'BeforeAppContainer')),
    initContainers: (sidecarSet.spec.initContainers ?? []).map((container) => withKruiseDefaults(container, 'AfterAppContainer')),
  };
}

/**
 * Computes the SidecarSet hash that Kruise's SidecarSet webhook stores in the SidecarSet's
 * `kruise.io/sidecarset-hash` annotation on every create and update. An annotation already in the
 * file is ignored, because the webhook overwrites it too.
 */
export function sidecarSetHash(sidecarSet: SidecarSet): string {
  const { containers, initContainers } = defaultedContainers(sidecarSet);
  return hashSidecarContainers(containers, initContainers);
}

/** Computes the hash of `kruise.io/sidecarset-hash-without-image`: the same with every image cleared. */
export function sidecarSetHashWithoutImage(sidecarSet: SidecarSet): string {
  const { containers, initContainers } = defaultedContainers(sidecarSet);
  const withoutImage = (container: SidecarContainer): SidecarContainer => ({ ...container, image: '' });
  return hashSidecarContainers(containers.map(withoutImage), initContainers.map(withoutImage));
}
