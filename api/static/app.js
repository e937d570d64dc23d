// The demo checkout: catalog -> cart -> order form -> the order's live payment window.
// Views are <section>s shown one at a time; `/demo?order=<id>` opens an order directly (the
// gateway's return page links there).

import { ApiError, demoSession, newIdempotencyKey, orderEvents, request } from "./api.js";
import { Countdown, formatRemaining } from "./countdown.js";
import { el } from "./dom.js";
import { formatTime, formatVnd, has, onLangChange, t, translate, wireToggle } from "./i18n.js";

const $ = (id) => document.getElementById(id);
const GATEWAYS = { momo: "MoMo", vnpay: "VNPay", payos: "PayOS" };
const TERMINAL = new Set(["paid", "cancelled", "expired", "failed"]);

const state = {
  config: { orderTypes: {}, maxPaymentAttempts: 3 },
  products: [],
  cart: new Map(), // variantId -> {label, price, stock, quantity}
  idempotencyKey: newIdempotencyKey(),
  order: null,
  events: null,
};
const countdown = new Countdown(onTick);

// ---- helpers ---------------------------------------------------------------------------------

function showError(err) {
  const box = $("error");
  if (!err) return void (box.hidden = true);
  const code = err instanceof ApiError ? err.code : "default";
  const vars = { message: err.message, max: state.order?.session.maxPaymentAttempts ?? state.config.maxPaymentAttempts };
  box.textContent = has(`error.${code}`) ? t(`error.${code}`, vars) : t("error.default", vars);
  box.hidden = false;
}

function setText(node, text) {
  if (node.textContent !== text) node.textContent = text; // live regions announce only real changes
}

function show(view) {
  $("shop").hidden = view !== "shop";
  $("order").hidden = view !== "order";
}

// ---- catalog and cart ------------------------------------------------------------------------

async function openShop() {
  closeOrder();
  show("shop");
  $("products").replaceChildren(el("li", {}, t("loading")));
  state.products = await request("GET", "/products", undefined, { auth: false });
  renderShop();
}

function renderShop() {
  $("products").replaceChildren(
    ...state.products.flatMap((product) =>
      product.variants.map((variant) => {
        const label = `${product.name} — ${variant.name}`;
        const soldOut = variant.stockQuantity < 1;
        return el(
          "li",
          { class: "product", "data-variant": variant.id },
          el("span", { class: "name" }, label),
          el("span", { class: "price" }, formatVnd(variant.price)),
          el("span", { class: "muted" }, soldOut ? t("outOfStock") : t("stock", { n: variant.stockQuantity })),
          el(
            "button",
            {
              type: "button",
              disabled: soldOut,
              "aria-label": t("addLabel", { name: label }),
              onclick: () => addToCart(variant, label),
            },
            t("add"),
          ),
        );
      }),
    ),
  );
  renderCart();
}

function addToCart(variant, label) {
  const line = state.cart.get(variant.id) ?? { label, price: variant.price, stock: variant.stockQuantity, quantity: 0 };
  line.quantity = Math.min(line.stock, line.quantity + 1);
  state.cart.set(variant.id, line);
  state.idempotencyKey = newIdempotencyKey(); // another cart is another order
  renderCart();
}

function renderCart() {
  const lines = [...state.cart.entries()];
  $("cart-empty").hidden = lines.length > 0;
  $("checkout").hidden = lines.length === 0;
  $("cart-lines").replaceChildren(
    ...lines.map(([id, line]) =>
      el(
        "li",
        {},
        el("span", { class: "name" }, line.label),
        el("input", {
          type: "number",
          min: 1,
          max: line.stock,
          value: line.quantity,
          "aria-label": t("quantityLabel", { name: line.label }),
          onchange: (event) => {
            line.quantity = Math.max(1, Math.min(line.stock, Number(event.target.value) || 1));
            state.idempotencyKey = newIdempotencyKey();
            renderCart();
          },
        }),
        el("span", { class: "price" }, formatVnd(line.price * line.quantity)),
        el(
          "button",
          {
            type: "button",
            class: "link",
            "aria-label": t("removeLabel", { name: line.label }),
            onclick: () => {
              state.cart.delete(id);
              state.idempotencyKey = newIdempotencyKey();
              renderCart();
            },
          },
          t("remove"),
        ),
      ),
    ),
  );
  $("cart-total").textContent = formatVnd(lines.reduce((sum, [, l]) => sum + l.price * l.quantity, 0));
}

function renderOrderTypes() {
  const select = $("order-type");
  const chosen = select.value || "normal";
  select.replaceChildren(
    ...Object.entries(state.config.orderTypes).map(([name, minutes]) => {
      const length = minutes >= 1 ? t("minutes", { n: minutes }) : t("seconds", { n: Math.round(minutes * 60) });
      return el("option", { value: name, selected: name === chosen }, `${name} (${length})`);
    }),
  );
}

async function placeOrder(event) {
  event.preventDefault();
  const form = new FormData(event.target);
  const button = $("place");
  button.disabled = true;
  setText(button, t("placing"));
  try {
    const body = {
      items: [...state.cart.entries()].map(([variantId, line]) => ({ variantId, quantity: line.quantity })),
      gateway: form.get("gateway"),
      orderType: form.get("orderType"),
      receiver: { name: form.get("name"), phone: form.get("phone"), address: form.get("address") },
    };
    const order = await request("POST", "/orders", body, { headers: { "Idempotency-Key": state.idempotencyKey } });
    state.cart.clear();
    state.idempotencyKey = newIdempotencyKey();
    showError(null);
    history.pushState(null, "", `/demo?order=${order.orderId}`);
    openOrder(order);
  } catch (err) {
    // Only a request that may have reached the server is retried under the same key.
    if (err.code !== "NETWORK") state.idempotencyKey = newIdempotencyKey();
    showError(err);
  } finally {
    button.disabled = false;
    setText(button, t("placeOrder"));
  }
}

// ---- the order's payment window --------------------------------------------------------------

async function openOrder(orderOrId) {
  show("order");
  const order = typeof orderOrId === "string" ? await request("GET", `/orders/${encodeURIComponent(orderOrId)}`) : orderOrId;
  renderOrder(order);
  if (!TERMINAL.has(order.status)) listen(order.orderId).catch(showError);
}

function closeOrder() {
  state.events?.close();
  state.events = null;
  state.order = null;
  countdown.stop();
}

async function listen(orderId) {
  state.events?.close();
  const source = await orderEvents(orderId);
  state.events = source;
  source.addEventListener("open", () => setText($("live"), t("live")));
  source.addEventListener("session", (event) => {
    const order = JSON.parse(event.data);
    if (state.order?.orderId !== order.orderId) return;
    renderOrder(order);
    if (TERMINAL.has(order.status)) source.close(); // or EventSource would reconnect to a finished stream
  });
  source.addEventListener("error", () => {
    if (state.events !== source) return;
    setText($("live"), t("offline"));
    // CONNECTING: the browser retries by itself. CLOSED: the server refused (e.g. restarting).
    if (source.readyState === EventSource.CLOSED) setTimeout(() => state.events === source && listen(orderId), 5000);
  });
}

function renderOrder(order) {
  state.order = order;
  const pending = order.status === "pending_payment";
  const session = order.session;
  setText($("order-h"), t("order", { code: order.orderCode }));
  const badge = $("status-badge");
  setText(badge, t(`status.${order.status}`));
  badge.dataset.status = order.status;
  if (!pending) {
    setText($("live"), "");
    state.events?.close();
  }
  $("countdown").hidden = !pending;
  $("retry").hidden = !pending;
  $("cancel").hidden = !pending;
  $("new-order").hidden = pending;
  $("order-items").replaceChildren(
    ...order.items.map((item) =>
      el("li", {}, `${item.productName} — ${item.variantName} × ${item.quantity}: ${formatVnd(item.subTotalAmount)}`),
    ),
  );
  setText($("order-total"), formatVnd(order.grandTotal));
  $("attempts").replaceChildren(
    ...order.attempts.map((a) =>
      el("li", {}, t("attemptRow", { n: a.attemptNo, gateway: GATEWAYS[a.gateway], status: t(`attempt.${a.status}`) })),
    ),
  );
  setText(
    $("retry-left"),
    session.remainingAttempts > 0
      ? t("remainingAttempts", { n: session.remainingAttempts, max: session.maxPaymentAttempts })
      : t("noAttemptsLeft"),
  );
  $("retry-button").disabled = !session.canRetry;
  const latest = order.attempts.at(-1);
  const retrySelect = $("retry").elements.gateway;
  if (latest && retrySelect.dataset.attempt !== String(latest.attemptNo)) {
    retrySelect.dataset.attempt = latest.attemptNo; // a new attempt: suggest another gateway, once
    retrySelect.value = Object.keys(GATEWAYS).find((g) => g !== latest.gateway);
  }
  if (pending) countdown.sync(session);
  else countdown.stop();
  renderWindow();
}

/** What depends on the clock as well as on the order: the state line and the pay link. */
function renderWindow() {
  const order = state.order;
  if (!order) return;
  const pending = order.status === "pending_payment";
  const timeUp = pending && countdown.remaining() === 0;
  const latest = order.attempts.at(-1);
  const link = $("pay-link");
  link.hidden = !(pending && !timeUp && latest?.status === "pending");
  if (!link.hidden) {
    link.href = latest.paymentUrl;
    setText(link, t("payWith", { gateway: GATEWAYS[latest.gateway] }));
    link.setAttribute("aria-label", t("payWithLabel", { gateway: GATEWAYS[latest.gateway] }));
  }
  if (timeUp) $("retry-button").disabled = true;
  const waiting = timeUp ? t("closing") : t("payBefore", { time: formatTime(order.session.expiresAt) });
  const message = pending ? waiting : t(`final.${order.status}`);
  setText($("state-msg"), message);
  $("state-msg").dataset.status = timeUp ? "closing" : order.status;
}

function onTick(remainingMs) {
  setText($("timer"), formatRemaining(remainingMs));
  renderWindow();
}

async function retryPayment(event) {
  event.preventDefault();
  const gateway = new FormData(event.target).get("gateway");
  const button = $("retry-button");
  button.disabled = true;
  try {
    await request("POST", `/orders/${state.order.orderId}/retry-payment`, { gateway });
    showError(null);
    renderOrder(await request("GET", `/orders/${state.order.orderId}`)); // the event follows too
  } catch (err) {
    showError(err);
    button.disabled = !state.order.session.canRetry;
  }
}

async function cancelOrder() {
  if (!confirm(t("cancelConfirm"))) return;
  try {
    renderOrder(await request("POST", `/orders/${state.order.orderId}/cancel`, {}));
    showError(null);
  } catch (err) {
    showError(err);
  }
}

// ---- start -----------------------------------------------------------------------------------

async function route() {
  showError(null);
  const orderId = new URLSearchParams(location.search).get("order");
  try {
    if (orderId) await openOrder(orderId);
    else await openShop();
  } catch (err) {
    showError(err);
  }
}

async function start() {
  translate();
  wireToggle($("lang"));
  onLangChange(() => {
    renderOrderTypes();
    if (!$("shop").hidden) renderShop();
    if (state.order) renderOrder(state.order);
    const sub = $("who").dataset.sub;
    if (sub) setText($("who"), t("customer", { sub }));
  });
  $("checkout").addEventListener("submit", placeOrder);
  $("retry").addEventListener("submit", retryPayment);
  $("cancel").addEventListener("click", cancelOrder);
  $("new-order").addEventListener("click", () => {
    history.pushState(null, "", "/demo");
    route();
  });
  window.addEventListener("popstate", route);
  try {
    state.config = await request("GET", "/demo/config", undefined, { auth: false, base: "" });
    renderOrderTypes();
    const { sub } = await demoSession();
    $("who").dataset.sub = sub;
    setText($("who"), t("customer", { sub }));
  } catch (err) {
    return showError(err);
  }
  await route();
}

start();
