/** tandem's version, also the default tag of the tandem image. */
export const VERSION = '0.1.0';
