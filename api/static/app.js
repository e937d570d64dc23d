// The demo checkout: catalog -> cart -> order form -> the order's payment window, which is the
// <paywindow-checkout> element shops drop into their own pages (/sdk/paywindow-checkout.js).
// Views are <section>s shown one at a time; `/demo?order=<id>` opens an order directly (the
// gateway's return page links there).

import { ApiError, demoSession, newIdempotencyKey, request } from "./api.js";
import { el } from "./dom.js";
import { currentLang, formatVnd, has, onLangChange, t, translate, wireToggle } from "./i18n.js";

const $ = (id) => document.getElementById(id);
const TERMINAL = ["paid", "cancelled", "expired", "failed"];

const state = {
  config: { orderTypes: {}, maxPaymentAttempts: 3 },
  products: [],
  cart: new Map(), // variantId -> {label, price, stock, quantity}
  idempotencyKey: newIdempotencyKey(),
};

// ---- helpers ---------------------------------------------------------------------------------

function showError(err) {
  const box = $("error");
  if (!err) return void (box.hidden = true);
  const code = err instanceof ApiError ? err.code : "default";
  const vars = { message: err.message, max: state.config.maxPaymentAttempts };
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
    await openOrder(order.orderId);
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

/** What a shop's backend does for its checkout page: mint a client secret for this one order
 * (with the customer's own token, which stays out of the element), then hand it to the element. */
async function openOrder(orderId) {
  show("order");
  $("new-order").hidden = true;
  const element = $("checkout-element");
  const { clientSecret } = await request("POST", `/orders/${encodeURIComponent(orderId)}/client-secret`);
  element.setAttribute("lang", currentLang());
  element.setAttribute("api", location.origin);
  element.setAttribute("client-secret", clientSecret);
  element.setAttribute("order", orderId);
}

function closeOrder() {
  const element = $("checkout-element");
  element.removeAttribute("order");
  element.removeAttribute("client-secret");
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
    $("checkout-element").setAttribute("lang", currentLang());
    const sub = $("who").dataset.sub;
    if (sub) setText($("who"), t("customer", { sub }));
  });
  $("checkout").addEventListener("submit", placeOrder);
  for (const end of TERMINAL) document.addEventListener(`paywindow:${end}`, () => ($("new-order").hidden = false));
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
