/** typo-js (BSD-3-Clause): a Hunspell-style spell checker with the en_US dictionary bundled. */
declare module 'typo-js' {
  class Typo {
    constructor(dictionary: string);
    check(word: string): boolean;
  }
  export = Typo;
}
