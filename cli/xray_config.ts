/**
 * `router xray-config --side ingress|egress --settings FILE.json`: renders
 * the Xray-lite bridge config (VLESS + XHTTP + REALITY) for one side and
 * prints it as JSON. Exit 0 on success, 1 on invalid settings, 2 on bad flags.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { renderXrayConfig, type XraySide } from "../xray/render.ts";

const HELP = `Usage: router xray-config --side ingress|egress --settings FILE.json

Renders an Xray-core config for the Xray-lite bridge and prints it on stdout.

  --side ingress   the far server: VLESS inbound over XHTTP + REALITY, freedom out
  --side egress    next to the router: SOCKS5 inbound on 127.0.0.1:37101,
                   VLESS outbound over XHTTP + REALITY to the ingress server
  --settings FILE  JSON settings (see docs/outbounds.md); errors name the field
  -h, --help       this text

Exit 0 on success, 1 on invalid settings, 2 on bad flags.
`;

/** Where the command reads the settings file and writes output (injectable for tests). */
export interface XrayConfigIo {
  readTextFile(path: string): Promise<string>;
  stdout(text: string): void;
  stderr(text: string): void;
}

const realIo: XrayConfigIo = {
  readTextFile: (p) => Deno.readTextFile(p),
  stdout: (t) => console.log(t),
  stderr: (t) => console.error(t),
};

/** Entry of `router xray-config`; returns the exit code. */
export async function runXrayConfigCommand(
  args: string[],
  io: XrayConfigIo = realIo,
): Promise<number> {
  let side: XraySide, file: string;
  try {
    const { values } = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        side: { type: "string" },
        settings: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    });
    if (values.help) {
      io.stdout(HELP);
      return 0;
    }
    if (values.side !== "ingress" && values.side !== "egress") {
      throw new TypeError(`--side: ${JSON.stringify(values.side ?? null)}: want ingress or egress`);
    }
    if (!values.settings) throw new TypeError("--settings: required");
    side = values.side;
    file = values.settings;
  } catch (e) {
    io.stderr(`xray-config: ${(e as Error).message}\n\n${HELP}`);
    return 2;
  }
  let settings: unknown;
  try {
    settings = JSON.parse(await io.readTextFile(file));
  } catch (e) {
    io.stderr(`xray-config: ${file}: ${(e as Error).message}`);
    return 1;
  }
  try {
    io.stdout(JSON.stringify(renderXrayConfig(side, settings), null, 2));
    return 0;
  } catch (e) {
    io.stderr(`xray-config: ${file}: ${(e as Error).message}`);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await runXrayConfigCommand(Deno.args));
