// A SMART App Launch in a real browser: headless Chromium (driven by playwright-core) runs a small
// app built on SMART's own client-js (fhirclient) against the FHIR server's authorization server.
//
//   node smart_browser.mjs <fhir-base> <app-port> <username> <password> <chromium> <client-js>
//
// The app (smart-app/*.html) is served on 127.0.0.1:<app-port>, another origin than the server,
// so discovery, the token exchange and the FHIR calls all go through CORS, as for a real app.
// Prints one JSON line: what the app saw once launched, plus the pages the browser went through.
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const [base, appPort, username, password, chromiumPath, clientJs] = process.argv.slice(2);
const files = {
  "/launch.html": [join(here, "smart-app", "launch.html"), "text/html"],
  "/index.html": [join(here, "smart-app", "index.html"), "text/html"],
  "/fhir-client.js": [clientJs, "text/javascript"],
};

const app = createServer(async (request, response) => {
  const file = files[new URL(request.url, "http://app").pathname];
  if (!file) {
    response.writeHead(404).end();
    return;
  }
  response.writeHead(200, { "content-type": file[1] }).end(await readFile(file[0]));
});
await new Promise((resolve) => app.listen(Number(appPort), "127.0.0.1", resolve));

// the flags Chromium needs here: no sandbox as root, no network beyond loopback
const browser = await chromium.launch({
  executablePath: chromiumPath,
  headless: true,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
const pages = [];
const consoleErrors = [];
let outcome;
try {
  const page = await browser.newPage();
  page.on("framenavigated", (frame) => {
    if (frame === page.mainFrame()) pages.push(new URL(frame.url()).pathname);
  });
  page.on("console", (message) => {
    if (message.type() === "error") consoleErrors.push(message.text());
  });
  const launch = `http://127.0.0.1:${appPort}/launch.html?iss=${encodeURIComponent(base)}`;
  await page.goto(launch);
  // the authorization server's sign-in page
  await page.waitForSelector("input[name=username]", { timeout: 20000 });
  const signInTitle = await page.title();
  await page.fill("input[name=username]", username);
  await page.fill("input[name=password]", password);
  await page.click("button[type=submit]");
  // the patient picker (launch/patient), then back to the app
  await page.waitForSelector("input[name=patient]", { timeout: 20000 });
  const pickerTitle = await page.title();
  await page.check("input[name=patient][value=p1]");
  await page.click("button[value=allow]");
  await page.waitForFunction(
    () => document.getElementById("result")?.textContent !== "waiting",
    null,
    { timeout: 20000 },
  );
  const seen = JSON.parse(await page.textContent("#result"));
  outcome = { ...seen, signInTitle, pickerTitle, pages, consoleErrors };
} catch (error) {
  outcome = { ok: false, error: String(error), pages, consoleErrors };
} finally {
  await browser.close();
  app.close();
}
console.log(JSON.stringify(outcome));
