// Shows every <time datetime="..."> in the reader's own time zone and locale.
// Without JavaScript the server's text (UTC, to the minute) stays; with it,
// that text moves to the element's title.
"use strict";
(function () {
  var format = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
  document.querySelectorAll("time[datetime]").forEach(function (element) {
    var moment = new Date(element.dateTime);
    if (isNaN(moment.getTime())) {
      return;
    }
    element.title = element.textContent;
    element.textContent = format.format(moment);
  });
})();
