import type { ImageConfigRequest, ImageConfigResolver, ImageConfigResult } from '../image-config.js';
import { parseImageReference } from './reference.js';

/**
 * Returns the imagePullPolicy that Kubernetes applies: the container's own, or by default `Always`
 * for the tag `latest` (written or implied) and `IfNotPresent` for any other tag or a digest alone.
 */
export function effectivePullPolicy(image: string, policy: string | undefined): string {
  if (policy !== undefined && policy !== '') {
    return policy;
  }
  let tag: string | undefined;
  try {
    tag = parseImageReference(image).tag;
  } catch {
    // The registry resolver reports the invalid reference; here it only decides the order.
    tag = undefined;
  }
  return tag === 'latest' ? 'Always' : 'IfNotPresent';
}

/**
 * Asks the registry and the local image store in the order that matches what the kubelet runs.
 * With `Always` the node pulls the tag's current manifest, so the registry comes first and a stale
 * local copy cannot win. With `IfNotPresent` or `Never` the node runs the image it has stored, so
 * the local store comes first and the registry is asked only when the image is not stored. The
 * local store is that of the machine running `tandem inject`, which is the node's only when the
 * pod runs there too, as with `podman kube play`.
 */
export class PullPolicyResolver implements ImageConfigResolver {
  constructor(
    private readonly registry: ImageConfigResolver,
    private readonly localStore: ImageConfigResolver,
  ) {}

  async resolve(request: ImageConfigRequest): Promise<ImageConfigResult> {
    const policy = effectivePullPolicy(request.image, request.imagePullPolicy);
    const order = policy === 'Always' ? [this.registry, this.localStore] : [this.localStore, this.registry];
    const reasons: string[] = [];
    for (const resolver of order) {
      const result = await resolver.resolve(request);
      if (result.found) {
        return result;
      }
      reasons.push(result.reason);
    }
    return { found: false, reason: reasons.join('; ') };
  }
}
