// The link to the other edition, in the menu bar of every page: "日本語" on an English
// page, "English" on a Japanese one, to the same page and section. The English edition
// is built at the root (book/book/) and the Japanese one under ja/ (book/book/ja/), so the
// link is a relative path either way and works from a file:// copy as well as on a server.
// On a Japanese page it also puts mdBook's own menu labels into Japanese.
(function () {
    "use strict";
    var lang = document.documentElement.lang;
    if (lang !== "en" && lang !== "ja") return;
    var buttons = document.querySelector("#mdbook-menu-bar .right-buttons") ||
        document.querySelector(".right-buttons");
    if (!buttons || typeof path_to_root === "undefined") return;

    // The page's path below the root of its edition: as many trailing segments of the
    // URL as path_to_root climbs, plus the file itself.
    var segments = window.location.pathname.split("/");
    var depth = (path_to_root.match(/\.\.\//g) || []).length;
    var page = segments.slice(segments.length - 1 - depth).join("/") || "index.html";
    if (page === "404.html") return;

    var link = document.createElement("a");
    link.className = "lang-switch";
    if (lang === "en") {
        link.href = path_to_root + "ja/" + page + window.location.hash;
        link.hreflang = link.lang = "ja";
        link.textContent = "日本語";
        link.title = "この本を日本語で読む";
    } else {
        link.href = path_to_root + "../" + page + window.location.hash;
        link.hreflang = link.lang = "en";
        link.textContent = "English";
        link.title = "Read this book in English";
    }
    // The section a reader scrolls to changes the hash: keep the link on it.
    window.addEventListener("hashchange", function () {
        link.href = link.href.replace(/#.*$/, "") + window.location.hash;
    });
    buttons.insertBefore(link, buttons.firstChild);

    if (lang !== "ja") return;
    var labels = {
        "Toggle Table of Contents": "目次の表示を切り替える",
        "Table of contents": "目次",
        "Change theme": "テーマを変える",
        "Themes": "テーマ",
        "Search (`/`)": "検索 (`/`)",
        "Toggle Searchbar": "検索欄の表示を切り替える",
        "Print this book": "この本を印刷する",
        "Previous chapter": "前の章",
        "Next chapter": "次の章",
        "Page navigation": "ページ移動"
    };
    var named = document.querySelectorAll("[title], [aria-label]");
    for (var i = 0; i < named.length; i++) {
        ["title", "aria-label"].forEach(function (attr) {
            var value = named[i].getAttribute(attr);
            if (value && labels[value]) named[i].setAttribute(attr, labels[value]);
        });
    }
    var search = document.getElementById("mdbook-searchbar");
    if (search) search.placeholder = "この本を検索 …";
})();
