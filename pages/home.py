"""Home: what DCNN Studio does and where to start."""

import streamlit as st

from ui import challenge, state

state.ensure_started_from_app()

st.title("DCNN Studio")
st.markdown(
    "Learn image classification with deep convolutional networks, in four steps. "
    "Everything runs here in your browser session; the bundled data sets work offline."
)
steps = [
    ("pages/data.py", "1 · Data", "Look at the images: samples, classes, mean images, pixel values."),
    ("pages/model.py", "2 · Model", "Design a network with sliders, from the article's dense baseline to small CNNs."),
    ("pages/train.py", "3 · Train", "Train it and watch the loss and accuracy curves move. Stop whenever you like."),
    ("pages/predict.py", "4 · Predict", "Test-set accuracy, the confusion matrix, and predictions on your own photos."),
]
columns = st.columns(len(steps))
for column, (page, title, text) in zip(columns, steps, strict=True):
    with column, st.container(border=True):
        st.page_link(page, label=title)
        st.caption(text)

with st.container(border=True, key="home_challenge"):
    st.markdown(f"**Beat the article's {challenge.ARTICLE_ACCURACY}** — all 60,000 Fashion-MNIST training images, "
                f"the {challenge.CHALLENGE_PRESET} with its recipe planned to "
                f"{challenge.CHALLENGE_BUDGET_S / 60:g} minutes of training, in one click. Expected: {challenge.EXPECTED}.")  # fmt: skip
    if st.button(f"Beat the article's {challenge.ARTICLE_ACCURACY}", key="home_beat_article", type="primary",
                 icon=":material/emoji_events:"):  # fmt: skip
        if challenge.start_challenge():
            st.switch_page("pages/train.py")
    error = st.session_state.pop(challenge.ERROR, None)
    if error:
        st.warning(error, icon=":material/cloud_off:")

st.subheader("Why convolutions?")
st.markdown(
    "The article this studio grew from trains *Flatten → Dense(256, relu) → Dense(10, softmax)* on "
    "Fashion-MNIST for 10 epochs and reaches a test accuracy of about 0.876. "
    "A dense layer gives every pixel its own weights, so a pattern learned in one place must be "
    "learned again everywhere else. A convolution slides the same small filters over the whole image. "
    "Train the **Article baseline** preset and then the **Simple CNN** on the *Shapes* set — where "
    "shapes appear anywhere in the frame — and compare them on the Train page."
)
