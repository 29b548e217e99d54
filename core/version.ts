/** The vpn-router version, shown by `router version` and IPC `status`. */
export const VERSION = "0.1.0";
