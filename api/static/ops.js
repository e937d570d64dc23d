// The operators' page: the admin token the operator pastes (sessionStorage: this tab only), the
// queues that need a person (payments, undelivered verdicts) with their actions, an order by its
// code with its workflow in the Temporal Web UI and the audit trail of what operators did to it.

import { ApiError, request } from "./api.js";
import { el } from "./dom.js";

const TOKEN_KEY = "paywindow.opsToken";
const GATEWAYS = { momo: "MoMo", vnpay: "VNPay", payos: "PayOS" };
const REFUND_API = new Set(["momo", "vnpay"]); // PayOS money goes back by bank transfer
const NEEDS_PERSON = new Set(["refund_required", "needs_review"]);
const $ = (id) => document.getElementById(id);

let config = { temporalUiUrl: "", namespace: "default" };

const vnd = (amount) => (amount == null ? "—" : `${new Intl.NumberFormat("en-US").format(amount)} ₫`);
const when = (iso) => (iso ? new Date(iso).toLocaleString("en-GB") : "—");
const token = () => sessionStorage.getItem(TOKEN_KEY);
const api = (method, path, body) => request(method, path, body, { token: token() });

function claims(jwt) {
  try {
    return JSON.parse(atob(jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
  } catch {
    return null;
  }
}

function showError(err) {
  const box = $("error");
  if (!err) return void (box.hidden = true);
  box.textContent = err instanceof ApiError ? `${err.message} (${err.code})` : String(err);
  box.hidden = false;
}

function notify(text) {
  $("notice").textContent = text;
  $("notice").hidden = !text;
}

// ---- the token --------------------------------------------------------------------------------

function signedIn(on) {
  $("sign-in").hidden = on;
  $("desk").hidden = !on;
  $("forget").hidden = !on;
  $("who").textContent = on ? `signed in as ${claims(token())?.sub ?? "?"}` : "";
}

async function start() {
  showError(null);
  try {
    await Promise.all([loadPayments(), loadVerdicts()]);
    signedIn(true);
  } catch (err) {
    if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
      sessionStorage.removeItem(TOKEN_KEY); // not an admin's: ask again
      signedIn(false);
    }
    showError(err);
  }
}

// ---- payments that need a person -----------------------------------------------------------------

async function loadPayments() {
  const form = $("payments-filter");
  const params = new URLSearchParams({ size: "100" });
  for (const name of ["status", "gateway"]) if (form[name].value) params.set(name, form[name].value);
  const page = await api("GET", `/admin/payments?${params}`);
  $("payments").tBodies[0].replaceChildren(...page.items.map(paymentRow));
  $("payments-empty").hidden = page.items.length > 0;
  $("payments-total").textContent = `${page.total} payment(s)`;
}

function paymentRow(p) {
  const actions = el("td", { class: "actions" });
  // An open order's money is its workflow's; money a gateway may be returning is never sent by hand.
  if (NEEDS_PERSON.has(p.status) && p.orderStatus !== "pending_payment") {
    if (REFUND_API.has(p.gateway)) {
      actions.append(el("button", { type: "button", onclick: () => refund(p) }, "Refund"));
    }
    if (!p.refundAsked) {
      actions.append(el("button", { type: "button", onclick: () => markRefunded(p) }, "Mark refunded"));
    }
  }
  return el(
    "tr",
    { "data-payment": p.paymentId },
    el("td", {}, orderButton(p.orderCode)),
    el("td", {}, `${GATEWAYS[p.gateway] ?? p.gateway} ${p.gatewayOrderId}`),
    el("td", { class: "price" }, vnd(p.amount)),
    el("td", { class: "price" }, vnd(p.receivedAmount)),
    el("td", {}, el("span", { class: "badge", "data-status": p.status }, p.status)),
    el("td", {}, p.reason ?? ""),
    el("td", {}, when(p.updatedAt)),
    actions,
  );
}

function orderButton(code) {
  if (code == null) return "unmatched";
  return el("button", { type: "button", class: "link", onclick: () => findOrder(String(code)) }, String(code));
}

/** The confirmation dialog: resolves {reference, note}, or null when the operator cancels. */
function ask({ title, text, reference = false }) {
  const dialog = $("confirm");
  const form = $("confirm-form");
  form.reset();
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  $("reference-label").hidden = !reference;
  form.reference.required = reference;
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.oncancel = () => resolve(null); // Escape
    form.onsubmit = (event) => {
      event.preventDefault();
      dialog.close();
      if (event.submitter?.value !== "ok") return resolve(null);
      resolve({ reference: form.reference.value.trim(), note: form.note.value.trim() });
    };
  });
}

async function act(action) {
  showError(null);
  notify("");
  try {
    notify(await action());
  } catch (err) {
    showError(err);
  }
  await Promise.all([loadPayments(), loadVerdicts()]).catch(showError);
}

async function refund(p) {
  const amount = p.receivedAmount ?? p.amount; // exactly what the gateway took, as the refund sends
  const answer = await ask({
    title: `Refund ${vnd(amount)} through ${GATEWAYS[p.gateway]}?`,
    text: `Order ${p.orderCode}, payment ${p.gatewayOrderId}. The gateway refunds one payment once, however often it is asked.`,
  });
  if (!answer) return;
  await act(async () => {
    const done = await api("POST", `/admin/payments/${p.paymentId}/refund`, { note: answer.note });
    return done.status === "refunded"
      ? `Order ${p.orderCode}: refunded through ${GATEWAYS[p.gateway]}.`
      : `Order ${p.orderCode}: refund under way (${done.status}).`;
  });
}

async function markRefunded(p) {
  const answer = await ask({
    title: `Mark order ${p.orderCode} refunded?`,
    text: `Only once the money (${vnd(p.receivedAmount ?? p.amount)}) has gone back outside ${GATEWAYS[p.gateway]}, e.g. by bank transfer.`,
    reference: true,
  });
  if (!answer) return;
  await act(async () => {
    await api("POST", `/admin/payments/${p.paymentId}/mark-refunded`, answer);
    return `Order ${p.orderCode}: marked refunded (${answer.reference}).`;
  });
}

// ---- verdicts not handed to their order -------------------------------------------------------------

async function loadVerdicts() {
  const page = await api("GET", "/admin/notifications?undelivered=true&size=100");
  $("verdicts").tBodies[0].replaceChildren(...page.items.map(verdictRow));
  $("verdicts-empty").hidden = page.items.length > 0;
}

function verdictRow(n) {
  const matched = n.orderId != null;
  const redeliver = el(
    "button",
    {
      type: "button",
      disabled: !matched,
      title: matched ? false : "It matches no payment of ours: nothing to deliver it to",
      onclick: () => act(async () => {
        await api("POST", `/admin/notifications/${n.notificationId}/redeliver`, {});
        return `Order ${n.orderCode}: verdict handed on.`;
      }),
    },
    "Redeliver",
  );
  return el(
    "tr",
    { "data-notification": n.notificationId },
    el("td", {}, when(n.receivedAt)),
    el("td", {}, `${GATEWAYS[n.gateway] ?? n.gateway} ${n.gatewayOrderId}`),
    el("td", {}, `${n.outcome} (${n.resultCode})`),
    el("td", { class: "price" }, vnd(n.amount)),
    el("td", {}, orderButton(n.orderCode)),
    el("td", { class: "actions" }, redeliver),
  );
}

// ---- an order ------------------------------------------------------------------------------------

function workflowUrl(orderId) {
  const ns = encodeURIComponent(config.namespace);
  return `${config.temporalUiUrl}/namespaces/${ns}/workflows/${encodeURIComponent(`order-${orderId}`)}`;
}

async function findOrder(code) {
  $("find").code.value = code;
  showError(null);
  let order;
  try {
    order = await api("GET", `/orders/${encodeURIComponent(code)}`);
  } catch (err) {
    $("order").hidden = true;
    return showError(err);
  }
  const trail = await api("GET", `/admin/audit?orderId=${order.orderId}`).catch((err) => (showError(err), { items: [] }));
  $("order-h").textContent = `Order ${order.orderCode}`;
  $("order-status").textContent = order.status;
  $("order-status").dataset.status = order.status;
  $("order-summary").textContent =
    `${vnd(order.grandTotal)} · customer ${order.customerId} · payment ${order.paymentStatus ?? "—"}` +
    (order.endReason ? ` · ${order.endReason}` : "");
  const link = $("workflow-link");
  link.href = workflowUrl(order.orderId);
  link.textContent = `Open workflow order-${order.orderId} in the Temporal UI`;
  $("order-attempts").replaceChildren(
    ...order.attempts.map((a) =>
      el("li", {}, `#${a.attemptNo} · ${GATEWAYS[a.gateway] ?? a.gateway} ${a.gatewayOrderId} · ${a.status} · ${vnd(a.amount)}`),
    ),
  );
  $("order-audit").replaceChildren(
    ...(trail.items.length
      ? trail.items.map((e) => el("li", {}, `${when(e.at)} · ${e.actor} · ${e.action}${e.note ? ` · “${e.note}”` : ""}`))
      : [el("li", { class: "muted" }, "Nothing yet.")]),
  );
  $("order").hidden = false;
}

// ---- wiring ------------------------------------------------------------------------------------

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, event.target.token.value.trim());
  event.target.reset();
  start();
});
$("forget").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  signedIn(false);
});
$("payments-filter").addEventListener("submit", (event) => {
  event.preventDefault();
  loadPayments().catch(showError);
});
$("find").addEventListener("submit", (event) => {
  event.preventDefault();
  findOrder(event.target.code.value.trim());
});

config = await request("GET", "/ops/config", undefined, { auth: false, base: "" });
if (token()) start();
else signedIn(false);
