// The worker entry: a module worker that hosts one engine, so loading and generation never block
// the page's main thread. Started by createWorkerEngine(); see worker-server.js for the protocol.
import { serve } from "./worker-server.js";

serve(globalThis);
