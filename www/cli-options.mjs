// Command-line options for the Node scripts (www/serve.mjs, bench/browser.mjs,
// bench/report.mjs): `handle(name, take)` is called for each argument in order; `take()`
// returns the option's value, from `--name=value` or the next argument (`usage` is called when
// there is none).
export function forEachOption(argv, usage, handle) {
  for (let i = 0; i < argv.length; i++) {
    let arg = argv[i];
    let value;
    const eq = arg.indexOf("=");
    if (arg.startsWith("--") && eq > 0) {
      // --port=0 style; for --serve=URLPATH=FILE the value is everything after the first "=".
      value = arg.slice(eq + 1);
      arg = arg.slice(0, eq);
    }
    const take = () => {
      if (value !== undefined) return value;
      if (i + 1 >= argv.length) usage(`${arg} needs a value`);
      return argv[++i];
    };
    handle(arg, take);
  }
}
